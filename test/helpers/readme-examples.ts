/**
 * The documented API examples as data: each `<!-- example: name -->` is followed by a ```sh block holding
 * one `curl` command and a ```json block holding the reply the service gave (or an ```sse block: a stream's
 * `data:` lines). The e2e test replays every
 * command against a live service and compares replies: exact values, except fields that differ from run to
 * run (ids, times, cache tiers), which only keep their type.
 */
import { parse } from 'shell-quote';

export interface ReadmeExample {
  name: string;
  /** The HTTP status the example documents (default 200). */
  status: number;
  method: string;
  /** Path and query, e.g. /v1/query?async=1. */
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** The documented reply (JSON; a stream as its events), or null when the example documents none. */
  reply: unknown;
  /** The reply is a Server-Sent Events stream (an ```sse block). */
  sse: boolean;
}

/** `<!-- example: name [status] -->`, a ```sh block, then (optionally) the reply in a ```json or ```sse block. */
export const EXAMPLE =
  /<!-- example: ([\w-]+)(?: (\d{3}))? -->\s*```sh\n([\s\S]*?)```(\s*```(json|sse)\n([\s\S]*?)```)?/g;

/** A Server-Sent Events body as its events: each `data:` line's JSON (`[DONE]` kept as the string). */
export function parseSse(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice('data: '.length))
    .map((data) => (data === '[DONE]' ? data : (JSON.parse(data) as unknown)));
}

function parseReply(lang: string | undefined, body: string | undefined): unknown {
  if (lang === undefined || body === undefined) return null;
  return lang === 'sse' ? parseSse(body) : (JSON.parse(body) as unknown);
}

export function parseExamples(markdown: string): ReadmeExample[] {
  return [...markdown.matchAll(EXAMPLE)].map((m) => ({
    name: m[1],
    status: Number(m[2] ?? 200),
    ...parseCurl(m[3].replace(/\\\n/g, ' ')),
    reply: parseReply(m[5], m[6]),
    sse: m[5] === 'sse',
  }));
}

/** A path's `$JOB_ID` replaced by the job id of the last reply that had one. */
export function withJobId(path: string, jobId: string | undefined): string {
  return jobId === undefined ? path : path.replace('$JOB_ID', jobId);
}

function parseCurl(command: string): Omit<ReadmeExample, 'name' | 'status' | 'reply' | 'sse'> {
  // Variables stay as written (`$JOB_ID` is filled in by runExamples).
  const args = parse(command.trim(), (name) => `$${name}`).map(String);
  if (args[0] !== 'curl') throw new Error(`not a curl command: ${command}`);
  let method: string | undefined;
  let url = '';
  let body: string | undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < args.length; i++) {
    const a = args[i];
    if (a === '-X') method = args[++i];
    else if (a === '-H') {
      const [k, ...v] = args[++i].split(':');
      headers[k.trim().toLowerCase()] = v.join(':').trim();
    } else if (a === '-d') body = args[++i];
    else if (a.startsWith('-'))
      continue; // -s, -N
    else url = a;
  }
  const u = new URL(url.startsWith('http') ? url : `http://${url}`);
  return {
    method: method ?? (body === undefined ? 'GET' : 'POST'),
    path: `${u.pathname}${u.search}`,
    headers,
    body,
  };
}

/** Keys whose values change from run to run: compared by type only (their subtrees by shape). */
const VOLATILE = new Set([
  'jobId',
  'id',
  'requestId',
  'created',
  'createdAt',
  'updatedAt',
  'ttftMs',
  'totalMs',
  'loadMs',
  'computeMs',
  'queueMs',
  'workerMs',
  'cache',
  'timings',
  'autoRatio',
]);

interface StreamEvent {
  choices?: { text?: string; delta?: { content?: string } }[];
}

/**
 * A stream as what stays the same from run to run: the whole text, the first and the last event with
 * their text taken out, and whether `[DONE]` ended it. How the text is cut into deltas depends on timing.
 */
export function streamSummary(events: unknown[]): unknown {
  const objects = events.filter((e): e is StreamEvent => typeof e === 'object' && e !== null);
  const piece = (e: StreamEvent) => e.choices?.[0]?.text ?? e.choices?.[0]?.delta?.content ?? '';
  const textless = (e: StreamEvent | undefined) =>
    e && {
      ...e,
      choices: e.choices?.map(({ text: _t, delta, ...c }) => ({
        ...c,
        ...(delta && { delta: { ...delta, content: null } }),
      })),
    };
  return {
    text: objects.map(piece).join(''),
    first: textless(objects[0]) ?? null,
    last: textless(objects[objects.length - 1]) ?? null,
    done: events[events.length - 1] === '[DONE]',
  };
}

/** Differences between a documented reply and an actual one, as readable paths (empty: they match). */
export function replyDifferences(expected: unknown, actual: unknown, path = '$', volatile = false): string[] {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${path}: expected an array`];
    if (!volatile && expected.length !== actual.length)
      return [`${path}: ${actual.length} items, documented ${expected.length}`];
    return expected.flatMap((e, i) =>
      i < actual.length ? replyDifferences(e, actual[i], `${path}[${i}]`, volatile) : [],
    );
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual))
      return [`${path}: expected an object`];
    const e = expected as Record<string, unknown>;
    const a = actual as Record<string, unknown>;
    const keys = new Set([...Object.keys(e), ...Object.keys(a)]);
    return [...keys].flatMap((k) => {
      if (!(k in a)) return [`${path}.${k}: documented but missing`];
      if (!(k in e)) return [`${path}.${k}: returned but not documented`];
      return replyDifferences(e[k], a[k], `${path}.${k}`, volatile || VOLATILE.has(k));
    });
  }
  if (volatile)
    return typeof expected === typeof actual
      ? []
      : [`${path}: ${typeof actual}, documented ${typeof expected}`];
  return expected === actual
    ? []
    : [`${path}: ${JSON.stringify(actual)}, documented ${JSON.stringify(expected)}`];
}

export interface ExampleRun {
  example: ReadmeExample;
  status: number;
  /** The reply's JSON, a stream's events, or the text of anything else. */
  reply: unknown;
}

async function send(base: string, ex: ReadmeExample, jobId: string | undefined) {
  const res = await fetch(`${base}${withJobId(ex.path, jobId)}`, {
    method: ex.method,
    headers: ex.headers,
    body: ex.body,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
    return { status: res.status, reply: parseSse(text) };
  }
  let reply: unknown = text;
  try {
    reply = JSON.parse(text);
  } catch {
    // metrics: kept as text
  }
  return { status: res.status, reply };
}

/**
 * Run the examples in order against `base`, as a reader would: after an ingest, wait until the document's
 * chunk caches are ready; a `GET /v1/jobs/$JOB_ID` waits until that job has finished.
 */
export async function runExamples(base: string, examples: ReadmeExample[]): Promise<ExampleRun[]> {
  const runs: ExampleRun[] = [];
  let jobId: string | undefined;
  for (const ex of examples) {
    let r = await send(base, ex, jobId);
    for (let i = 0; ex.path.includes('$JOB_ID') && i < 600; i++) {
      const state = (r.reply as { state?: string }).state;
      if (state === 'completed' || state === 'failed') break;
      await new Promise((done) => setTimeout(done, 50));
      r = await send(base, ex, jobId);
    }
    const id = (r.reply as { jobId?: unknown }).jobId;
    if (typeof id === 'string') jobId = id;
    if (ex.method === 'POST' && ex.path === '/v1/documents' && r.status === 202) {
      await untilReady(base, (r.reply as { id: string }).id, ex.headers);
    }
    runs.push({ example: ex, ...r });
  }
  return runs;
}

async function untilReady(base: string, id: string, headers: Record<string, string>): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const res = await fetch(`${base}/v1/documents/${id}`, { headers });
    const { status } = (await res.json()) as { status?: string };
    if (status === 'ready') return;
    if (status === 'failed') throw new Error(`document ${id} failed to precompute`);
    await new Promise((done) => setTimeout(done, 50));
  }
  throw new Error(`document ${id} not ready after 60 s`);
}

/** The markdown with each example's reply block replaced by the reply of its run (the order of `runs`). */
export function withRecordedReplies(markdown: string, runs: ExampleRun[]): string {
  let i = 0;
  return markdown.replace(EXAMPLE, (_whole, name: string, _status, sh: string, documented?: string) => {
    const run = runs[i++];
    if (run.example.name !== name) throw new Error(`example ${name} out of order`);
    const status = run.status === 200 ? '' : ` ${run.status}`;
    // Only examples that document a reply get the new one (metrics and the OpenAPI document do not).
    const sse = documented?.trimStart().startsWith('```sse');
    const shown = sse
      ? (run.reply as unknown[])
          .map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(rounded(e))}`)
          .join('\n\n')
      : readableJson(run.reply);
    const reply = documented ? `\n\n\`\`\`${sse ? 'sse' : 'json'}\n${shown}\n\`\`\`` : '';
    return `<!-- example: ${name}${status} -->\n\n\`\`\`sh\n${sh}\`\`\`${reply}`;
  });
}

/** Times are shown to 0.01 ms (they are compared by type only). */
function rounded(v: unknown, key = ''): unknown {
  if (typeof v === 'number') return VOLATILE.has(key) ? Math.round(v * 100) / 100 : v;
  if (Array.isArray(v)) return v.map((x) => rounded(x));
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, rounded(x, VOLATILE.has(key) ? key : k)]),
    );
  }
  return v;
}

function inlineJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(inlineJson).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${inlineJson(x)}`);
    return entries.length ? `{ ${entries.join(', ')} }` : '{}';
  }
  return JSON.stringify(v);
}

/** JSON as a reader wants it in a README: a value on one line when it fits 104 columns, else broken up. */
export function readableJson(value: unknown, indent = ''): string {
  const v = indent === '' ? rounded(value) : value;
  const one = inlineJson(v);
  if (indent.length + one.length <= 104) return one;
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== 'object')) return one;
    return `[\n${v.map((x) => inner + readableJson(x, inner)).join(',\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object') {
    const lines = Object.entries(v).map(
      ([k, x]) => `${inner}${JSON.stringify(k)}: ${readableJson(x, inner)}`,
    );
    return `{\n${lines.join(',\n')}\n${indent}}`;
  }
  return one;
}

/**
 * The README's API examples as data: each `<!-- example: name -->` is followed by a ```sh block holding one
 * `curl` command and a ```json block holding the reply the service gave. The e2e test replays every
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
  /** The documented reply (JSON), or null when the example documents no body (e.g. SSE). */
  reply: unknown;
}

/** `<!-- example: name [status] -->`, then a ```sh block, then (optionally) the reply as a ```json block. */
export const EXAMPLE =
  /<!-- example: ([\w-]+)(?: (\d{3}))? -->\s*```sh\n([\s\S]*?)```(\s*```json\n([\s\S]*?)```)?/g;

export function parseExamples(markdown: string): ReadmeExample[] {
  return [...markdown.matchAll(EXAMPLE)].map((m) => ({
    name: m[1],
    status: Number(m[2] ?? 200),
    ...parseCurl(m[3].replace(/\\\n/g, ' ')),
    reply: m[5] === undefined ? null : (JSON.parse(m[5]) as unknown),
  }));
}

/** A path's `$JOB_ID` replaced by the job id of the last reply that had one. */
export function withJobId(path: string, jobId: string | undefined): string {
  return jobId === undefined ? path : path.replace('$JOB_ID', jobId);
}

function parseCurl(command: string): Omit<ReadmeExample, 'name' | 'status' | 'reply'> {
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
  /** The reply's JSON, or its text when it is not JSON. */
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
  let reply: unknown = text;
  try {
    reply = JSON.parse(text);
  } catch {
    // SSE or metrics: kept as text
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
    const shown = readableJson(run.reply);
    const reply = documented ? `\n\n\`\`\`json\n${shown}\n\`\`\`` : '';
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

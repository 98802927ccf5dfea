/**
 * The README's API examples as data: each `<!-- example: name -->` is followed by a ```sh block holding one
 * `curl` command and a ```json block holding the reply the service gave. The e2e test replays every
 * command against a live service and compares replies: exact values, except fields that differ from run to
 * run (ids, times, cache tiers), which only keep their type.
 */
import { parse } from 'shell-quote';

export interface ReadmeExample {
  name: string;
  method: string;
  /** Path and query, e.g. /v1/query?async=1. */
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** The documented reply (JSON), or null when the example documents no body (e.g. SSE). */
  reply: unknown;
}

const EXAMPLE = /<!-- example: ([\w-]+) -->\s*```sh\n([\s\S]*?)```\s*(?:```json\n([\s\S]*?)```)?/g;

export function parseExamples(markdown: string): ReadmeExample[] {
  return [...markdown.matchAll(EXAMPLE)].map((m) => ({
    name: m[1],
    ...parseCurl(m[2].replace(/\\\n/g, ' ')),
    reply: m[3] === undefined ? null : (JSON.parse(m[3]) as unknown),
  }));
}

function parseCurl(command: string): Omit<ReadmeExample, 'name' | 'reply'> {
  const args = parse(command.trim()).map(String);
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

/** The HTTP client of the service tests: JSON in, the reply's status, headers, text and JSON out. */

export interface JsonRequest {
  method: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as it is (with a JSON content type), instead of `body`: malformed JSON, a binary body. */
  raw?: string | Buffer;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export interface JsonReply<B> {
  status: number;
  headers: Headers;
  /** The reply parsed as JSON; `{}` when it is not JSON (metrics, server-sent events). */
  body: B;
  text: string;
}

export async function requestJson<B = Record<string, unknown>>(
  url: string,
  o: JsonRequest,
): Promise<JsonReply<B>> {
  const res = await fetch(url, {
    method: o.method,
    headers: {
      ...(o.body !== undefined || o.raw !== undefined ? { 'content-type': 'application/json' } : {}),
      ...o.headers,
    },
    body:
      o.raw !== undefined
        ? typeof o.raw === 'string'
          ? o.raw
          : new Uint8Array(o.raw)
        : o.body === undefined
          ? undefined
          : JSON.stringify(o.body),
    signal: AbortSignal.timeout(o.timeoutMs ?? 30_000),
  });
  const text = await res.text();
  let body = {} as B;
  try {
    body = JSON.parse(text) as B;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body, text };
}

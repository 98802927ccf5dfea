/**
 * A TCP proxy in front of a real service (s3rver) that injects faults: `pass` forwards both ways, `delay`
 * holds every byte from the service for `delayMs` before passing it on (a slow store), `silent` accepts
 * connections and forwards nothing either way, on new and already open connections alike (a store that
 * stopped answering), `error500` answers every request itself with an S3 `InternalError` (HTTP 500) and
 * closes the connection (a store that is up but failing).
 */
import net from 'node:net';

export type ProxyMode =
  { kind: 'pass' } | { kind: 'delay'; delayMs: number } | { kind: 'silent' } | { kind: 'error500' };

const INTERNAL_ERROR_BODY =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>' +
  '<Message>We encountered an internal error. Please try again.</Message></Error>';
const INTERNAL_ERROR =
  'HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n' +
  `Content-Length: ${Buffer.byteLength(INTERNAL_ERROR_BODY)}\r\nConnection: close\r\n\r\n${INTERNAL_ERROR_BODY}`;

export interface FaultProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  set(mode: ProxyMode): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const { hostname, port } = new URL(target);
  let mode: ProxyMode = { kind: 'pass' };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    let answered = false;
    client.on('data', (chunk) => {
      if (mode.kind === 'error500') {
        // Once per connection: the rest of the request (a body in several packets) is dropped.
        if (!answered) client.end(INTERNAL_ERROR);
        answered = true;
        upstream.destroy();
      } else if (mode.kind !== 'silent' && !answered) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode.kind === 'silent' || answered) return;
      if (mode.kind === 'delay') setTimeout(() => client.write(chunk), mode.delayMs);
      else client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${own}`,
    set(m) {
      mode = m;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A TCP proxy in front of a real service (s3rver) that injects faults: `pass` forwards both ways, `delay`
 * holds every byte from the service for `delayMs` before passing it on (a slow store), `silent` accepts
 * connections and forwards nothing either way, on new and already open connections alike (a store that
 * stopped answering).
 */
import net from 'node:net';

export type ProxyMode = { kind: 'pass' } | { kind: 'delay'; delayMs: number } | { kind: 'silent' };

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
    client.on('data', (chunk) => {
      if (mode.kind !== 'silent') upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode.kind === 'silent') return;
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

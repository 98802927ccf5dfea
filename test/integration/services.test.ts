import net from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { openObjectStore } from '../../core/storage/index.js';
import { startRedis, startS3, uniquePrefix } from '../helpers/services.js';

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('test service harness', () => {
  it('starts a real redis-server configured for BullMQ, persisting, and stops it', async () => {
    const redis = await startRedis();
    const client = new Redis(redis.url, { maxRetriesPerRequest: null, lazyConnect: true });
    try {
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']); // durable, as the service requires
      await client.set('k', 'v');
      expect(await client.get('k')).toBe('v');
    } finally {
      client.disconnect();
      await redis.stop();
    }
    expect(await canConnect(redis.port)).toBe(false);
  });

  it('starts one without persistence when asked', async () => {
    const redis = await startRedis({ durable: false });
    const client = new Redis(redis.url, { lazyConnect: true });
    try {
      await client.connect();
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });

  it('runs several redis servers side by side', async () => {
    const [a, b] = await Promise.all([startRedis(), startRedis()]);
    try {
      expect(a.url).not.toBe(b.url);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('explains a missing redis-server binary', async () => {
    await expect(startRedis({ bin: '/nonexistent/redis-server' })).rejects.toThrow(
      /not installed.*apt-get install -y redis-server/,
    );
  });

  it('starts s3rver with a bucket and stops it', async () => {
    const s3 = await startS3({ bucket: 'harness-check' });
    const port = Number(new URL(s3.endpoint).port);
    const store = openObjectStore(`s3://${s3.bucket}`, {
      s3: {
        endpoint: s3.endpoint,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
        region: s3.region,
      },
    });
    try {
      await store.ping();
      await store.put('k', Buffer.from('v'));
      expect((await store.get('k'))?.toString()).toBe('v');
    } finally {
      await store.close();
      await s3.stop();
    }
    expect(await canConnect(port)).toBe(false);
  });

  it('makes unique prefixes', () => {
    const a = uniquePrefix('x y');
    expect(a).toMatch(/^x-y-[a-z0-9]+-[0-9a-f]{8}\/$/);
    expect(uniquePrefix()).not.toBe(uniquePrefix());
  });
});

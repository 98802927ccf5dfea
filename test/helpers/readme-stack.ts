/**
 * The service the README's examples run against: everything `npm start` runs, on the default settings
 * (stories260K, chunks of up to 256 tokens), with a Redis of its own.
 */
import { startStack } from './stack.js';
import { startRedis } from './services.js';

export async function startReadmeStack(): Promise<{ url: string; close(): Promise<void> }> {
  const redis = await startRedis();
  const stack = await startStack({ redis, label: 'readme', env: { CHUNK_TOKEN_BUDGET: '256' } });
  return {
    url: stack.api.url,
    async close() {
      await stack.close();
      await redis.stop();
    },
  };
}

import { sliceClamped, validateKey, validatePrefix, validateRange } from './keys.js';
import type { ObjectStore } from './types.js';

const named = new Map<string, Map<string, Buffer>>();

/**
 * In-process store. `memory://` gets a fresh private map; `memory://<name>` shares one map per name within
 * the process (so an API and a worker started in the same test see the same objects). Data is copied on
 * the way in and out, so callers may reuse their buffers.
 */
export class MemoryObjectStore implements ObjectStore {
  private readonly objects: Map<string, Buffer>;

  constructor(readonly name = '') {
    if (name === '') {
      this.objects = new Map();
    } else {
      let shared = named.get(name);
      if (!shared) named.set(name, (shared = new Map()));
      this.objects = shared;
    }
  }

  async get(key: string): Promise<Buffer | null> {
    const data = this.objects.get(validateKey(key));
    return data ? Buffer.from(data) : null;
  }

  async getRange(key: string, start: number, endExclusive: number): Promise<Buffer | null> {
    validateRange(start, endExclusive);
    const data = this.objects.get(validateKey(key));
    return data ? sliceClamped(data, start, endExclusive) : null;
  }

  async head(key: string): Promise<{ size: number } | null> {
    const data = this.objects.get(validateKey(key));
    return data ? { size: data.length } : null;
  }

  async put(key: string, data: Buffer): Promise<void> {
    this.objects.set(validateKey(key), Buffer.from(data));
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(validateKey(key));
  }

  async *list(prefix: string): AsyncIterable<string> {
    validatePrefix(prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
    yield* keys;
  }

  async ping(): Promise<void> {}

  describe(): string {
    return `memory://${this.name}`;
  }

  async close(): Promise<void> {}
}

/** Ascending UTF-8 byte order, the order S3 lists keys in (same as string order for ASCII keys). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

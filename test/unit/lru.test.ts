import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../core/errors.js';
import { ByteLru } from '../../core/storage/lru.js';

const bufLru = (maxBytes: number, evicted: string[] = []) =>
  new ByteLru<string, Buffer>({
    maxBytes,
    sizeOf: (b) => b.length,
    onEvict: (key) => evicted.push(key),
  });

describe('ByteLru', () => {
  it('stores and returns values and tracks bytes', () => {
    const lru = bufLru(100);
    expect(lru.set('a', Buffer.alloc(10))).toBe(true);
    expect(lru.set('b', Buffer.alloc(20))).toBe(true);
    expect(lru.get('a')?.length).toBe(10);
    expect(lru.size).toBe(2);
    expect(lru.bytes).toBe(30);
    expect(lru.get('missing')).toBeUndefined();
  });

  it('evicts least recently used entries until the new one fits', () => {
    const evicted: string[] = [];
    const lru = bufLru(30, evicted);
    lru.set('a', Buffer.alloc(10));
    lru.set('b', Buffer.alloc(10));
    lru.set('c', Buffer.alloc(10));
    lru.get('a'); // a is now most recent: order b, c, a
    lru.set('d', Buffer.alloc(15));
    expect(evicted).toEqual(['b', 'c']);
    expect([...lru.keys()]).toEqual(['a', 'd']);
    expect(lru.bytes).toBe(25);
  });

  it('peek and has do not refresh recency', () => {
    const evicted: string[] = [];
    const lru = bufLru(20, evicted);
    lru.set('a', Buffer.alloc(10));
    lru.set('b', Buffer.alloc(10));
    expect(lru.peek('a')?.length).toBe(10);
    expect(lru.has('a')).toBe(true);
    lru.set('c', Buffer.alloc(10));
    expect(evicted).toEqual(['a']);
  });

  it('overwriting replaces the size and makes the key most recent without onEvict', () => {
    const evicted: string[] = [];
    const lru = bufLru(30, evicted);
    lru.set('a', Buffer.alloc(10));
    lru.set('b', Buffer.alloc(10));
    lru.set('a', Buffer.alloc(5));
    expect(lru.bytes).toBe(15);
    expect([...lru.keys()]).toEqual(['b', 'a']);
    expect(evicted).toEqual([]);
  });

  it('rejects a value larger than the capacity and drops the old value under that key', () => {
    const lru = bufLru(10);
    lru.set('a', Buffer.alloc(5));
    lru.set('b', Buffer.alloc(5));
    expect(lru.set('a', Buffer.alloc(11))).toBe(false);
    expect(lru.has('a')).toBe(false);
    expect(lru.has('b')).toBe(true);
    expect(lru.bytes).toBe(5);
  });

  it('accepts a value exactly the capacity, evicting everything else', () => {
    const lru = bufLru(10);
    lru.set('a', Buffer.alloc(4));
    expect(lru.set('b', Buffer.alloc(10))).toBe(true);
    expect([...lru.keys()]).toEqual(['b']);
  });

  it('delete and clear release bytes without calling onEvict', () => {
    const evicted: string[] = [];
    const lru = bufLru(100, evicted);
    lru.set('a', Buffer.alloc(10));
    lru.set('b', Buffer.alloc(10));
    expect(lru.delete('a')).toBe(true);
    expect(lru.delete('a')).toBe(false);
    expect(lru.bytes).toBe(10);
    lru.clear();
    expect(lru.bytes).toBe(0);
    expect(lru.size).toBe(0);
    expect(evicted).toEqual([]);
  });

  it('works with zero-size values and zero capacity', () => {
    const lru = new ByteLru<number, string>({ maxBytes: 0, sizeOf: () => 0 });
    expect(lru.set(1, 'x')).toBe(true);
    expect(lru.get(1)).toBe('x');
    const none = new ByteLru<number, string>({ maxBytes: 0, sizeOf: (s) => s.length });
    expect(none.set(1, 'x')).toBe(false);
  });

  it('passes key and value to sizeOf and onEvict', () => {
    const seen: [string, number, number][] = [];
    const lru = new ByteLru<string, number>({
      maxBytes: 10,
      sizeOf: (value, key) => value + key.length,
      onEvict: (key, value, size) => seen.push([key, value, size]),
    });
    lru.set('ab', 4); // size 6
    lru.set('c', 4); // size 5 -> evicts ab
    expect(seen).toEqual([['ab', 4, 6]]);
  });

  it('rejects bad capacities and sizes', () => {
    expect(() => new ByteLru({ maxBytes: -1, sizeOf: () => 1 })).toThrow(InvalidArgumentError);
    expect(() => new ByteLru({ maxBytes: Number.NaN, sizeOf: () => 1 })).toThrow(InvalidArgumentError);
    const lru = new ByteLru<string, number>({ maxBytes: 10, sizeOf: (v) => v });
    expect(() => lru.set('a', -1)).toThrow(InvalidArgumentError);
    expect(() => lru.set('a', Number.POSITIVE_INFINITY)).toThrow(InvalidArgumentError);
  });

  it('keeps the byte count exact over many random operations', () => {
    const lru = new ByteLru<number, number>({ maxBytes: 1000, sizeOf: (v) => v });
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 5000; i++) {
      const key = rand(50);
      const op = rand(3);
      if (op === 0) lru.set(key, rand(300));
      else if (op === 1) lru.get(key);
      else lru.delete(key);
      let total = 0;
      for (const k of lru.keys()) total += lru.peek(k)!;
      expect(lru.bytes).toBe(total);
      expect(lru.bytes).toBeLessThanOrEqual(1000);
    }
  });
});

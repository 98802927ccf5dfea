/**
 * Edge cases a bug would slip past: the GPU chunk tier's byte bound and references (host-side logic, CPU
 * tensors, no GPU), the cost model's running averages over several observations, top-p exactly on a
 * cumulative boundary, an API key one character off a valid one, and `--check-layer` at the number of
 * layers.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { authenticate } from '../../api/middleware/auth.js';
import { CostModel } from '../../core/blend/index.js';
import { DeviceChunkTier } from '../../core/cache/device-tier.js';
import { loadConfig } from '../../core/config/index.js';
import { HttpError } from '../../api/errors.js';
import { sampleToken } from '../../core/model/generate.js';
import { DeviceChunk } from '../../core/model/device/cache.js';
import { main } from '../../cli/main.js';
import { STORIES_DIR } from '../helpers/models.js';

describe('DeviceChunkTier', () => {
  /** A chunk of `bytes` over CPU tensors, with a count of how often its tensors were disposed. */
  function chunk(bytes: number): DeviceChunk & { disposed: () => number } {
    let disposed = 0;
    const tensor = () => {
      const t = new ort.Tensor('float32', new Float32Array(4), [1, 4]);
      const dispose = t.dispose.bind(t);
      t.dispose = () => {
        disposed++;
        dispose();
      };
      return t;
    };
    return Object.assign(new DeviceChunk([tensor()], [tensor()], 1, bytes), { disposed: () => disposed });
  }

  it('keeps at most its bytes, evicting the least recently used and releasing what it evicts', () => {
    const tier = new DeviceChunkTier(1_000);
    const [a, b, c, d] = [400, 400, 200, 300].map(chunk);
    for (const [key, ch] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ] as const) {
      tier.put(key, ch);
      ch.release(); // the uploader's own reference: from now on only the tier holds it
    }
    expect(tier.bytes).toBe(1_000);
    expect(tier.get('a')).toBe(a); // a becomes the most recently used
    tier.put('d', d); // 1,300 > 1,000: b (least recent) goes, then 900 fit
    d.release();
    expect(tier.bytes).toBe(900);
    expect(tier.get('b')).toBeUndefined();
    expect(b.disposed()).toBe(2); // its K and V
    expect([a, c, d].map((x) => x.disposed())).toEqual([0, 0, 0]);
    expect(tier.size).toBe(3);
  });

  it('refuses a chunk larger than the whole tier, releasing only its own reference', () => {
    const tier = new DeviceChunkTier(500);
    const big = chunk(501);
    tier.put('big', big);
    expect(tier.get('big')).toBeUndefined();
    expect(tier.bytes).toBe(0);
    expect(big.disposed()).toBe(0); // the uploader still holds it
    big.release();
    expect(big.disposed()).toBe(2);
  });

  it('replaces a key (the old chunk released), ignores putting the same chunk twice, and clears', () => {
    const tier = new DeviceChunkTier(1_000);
    const first = chunk(100);
    const second = chunk(200);
    tier.put('k', first);
    first.release();
    tier.put('k', first); // same chunk: no second reference taken
    tier.put('k', second);
    second.release();
    expect(first.disposed()).toBe(2);
    expect(tier.bytes).toBe(200);
    tier.clear();
    expect(second.disposed()).toBe(2);
    expect([tier.bytes, tier.size]).toEqual([0, 0]);
  });
});

describe('CostModel', () => {
  it('averages several observations exponentially (alpha 0.3), each kind on its own', () => {
    const m = new CostModel();
    expect(m.estimate(1_000)).toBeNull();
    m.observeLoad(1_000, 1); // 1,000 B/ms
    expect(m.estimate(1_000)).toBeNull(); // no layer timing yet
    m.observeLoad(3_000, 1); // 3,000 B/ms: 0.3 × 3,000 + 0.7 × 1,000 = 1,600
    m.observeLoad(500, 1); // 0.3 × 500 + 0.7 × 1,600 = 1,270
    m.observeLoad(0, 5); // ignored: nothing loaded
    m.observeLayer(10, 20); // 2 ms/token
    m.observeLayer(10, 40); // 0.3 × 4 + 0.7 × 2 = 2.6
    m.observeLayer(5, -1); // ignored
    const e = m.estimate(12_700)!;
    expect(e.layerLoadMs).toBeCloseTo(12_700 / 1_270, 12);
    expect(e.tokenLayerMs).toBeCloseTo(2.6, 12);
  });
});

describe('top-p on the cumulative boundary', () => {
  // Probabilities exactly 0.5, 0.25, 0.25: exp(-ln 2) is exactly 0.5 in doubles, but a Float32Array rounds
  // -ln 2, so the temperature scales the stored logit back to -ln 2 exactly (checked below).
  const logits = new Float32Array([0, -Math.LN2, -Math.LN2]);
  const temperature = logits[1] / -Math.LN2;
  const draws = (o: { topP: number }) => {
    const seen = new Set<number>();
    for (let i = 0; i < 1_000; i++) {
      const r = (i + 0.5) / 1_000;
      seen.add(sampleToken(logits, { maxTokens: 1, temperature, ...o }, () => r));
    }
    return [...seen].sort();
  };

  it('puts the probabilities exactly on 0.5, 0.25, 0.25', () => {
    expect(logits[1] / temperature).toBe(-Math.LN2);
    expect(Math.exp(logits[1] / temperature)).toBe(0.5);
  });

  it('keeps the tokens up to and including the one that reaches top-p exactly', () => {
    expect(draws({ topP: 0.5 })).toEqual([0]);
    expect(draws({ topP: 0.75 })).toEqual([0, 1]);
    expect(draws({ topP: 1 })).toEqual([0, 1, 2]);
  });

  it('takes the next token as soon as top-p is past the boundary', () => {
    expect(draws({ topP: 0.5000001 })).toEqual([0, 1]);
    expect(draws({ topP: 0.7500001 })).toEqual([0, 1, 2]);
  });
});

describe('API keys', () => {
  const KEY = 'acme-key-0123456789abcdef';
  const check = authenticate(loadConfig({ API_KEYS: `acme:${KEY}` }));
  const run = (key: string) => {
    let error: unknown = null;
    const res = { locals: {} as Record<string, unknown>, setHeader: () => undefined };
    const req = { get: (h: string) => (h.toLowerCase() === 'authorization' ? `Bearer ${key}` : undefined) };
    check(req as never, res as never, (err?: unknown) => (error = err ?? null));
    return { error, principal: res.locals.principal };
  };

  it('accepts the key and refuses one that differs only in its last character', () => {
    expect(run(KEY)).toMatchObject({ error: null, principal: { tenant: 'acme' } });
    for (const near of [KEY.slice(0, -1) + 'e', KEY.slice(0, -1), `${KEY}f`, KEY.toUpperCase()]) {
      const { error, principal } = run(near);
      expect(error, near).toBeInstanceOf(HttpError);
      expect((error as HttpError).status, near).toBe(401);
      expect(principal, near).toBeUndefined();
    }
  });
});

describe('cacheblend generate --check-layer', () => {
  const messages: string[] = [];
  async function generate(checkLayer: number) {
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (messages.push(String(s)), true)) as typeof process.stderr.write;
    try {
      return await main(
        [
          'generate',
          '--model',
          STORIES_DIR,
          '--chunk',
          'Lily had a red ball.',
          '--question',
          'What did Lily have?',
          '--mode',
          'blend',
          '--check-layer',
          String(checkLayer),
          '--max-tokens',
          '2',
        ],
        () => undefined,
      );
    } finally {
      process.stderr.write = write;
    }
  }

  it('runs at the last layer (4 of stories260K) and refuses the number of layers (5) with a message', async () => {
    expect(await generate(4)).toBe(0);
    messages.length = 0;
    expect(await generate(5)).toBe(2);
    expect(messages.join('')).toContain('--check-layer must be an integer in [0, 4]');
  });
});

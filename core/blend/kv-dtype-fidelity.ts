import { decodeChunkKv, encodeChunkKv, type KvDtype } from '../kv/format.js';
import { releaseCache, type Engine } from '../model/engine.js';
import { decode } from '../model/generate.js';
import { blendPrefill } from './blend.js';
import { memorySource, precomputeChunk, tokenIdsOnly } from './chunks.js';
import { klDivergence } from './fidelity.js';
import type { BlendOptions, ChunkKvSource } from './types.js';

/**
 * What storing chunk caches in a coarser dtype costs: for each mode and KV dtype, the first token's
 * KL(full ‖ mode) and greedy agreement with full prefill (as in measureFidelity), and the same two against
 * the mode run on the reference dtype's caches (fp16, what the service stores by default).
 */
export interface KvDtypeFidelityRow {
  /** e.g. `reuse`, `blend r=0.15`. */
  config: string;
  kvDtype: KvDtype;
  meanKlVsFull: number;
  maxKlVsFull: number;
  agreementVsFull: number;
  /** KL(mode on reference caches ‖ mode on these caches), first token. */
  meanKlVsReference: number;
  maxKlVsReference: number;
  agreementVsReference: number;
}

/** A chunk's cache stored in `dtype` and read back, as the service would serve it. */
export async function storedSource(engine: Engine, ids: number[], dtype: KvDtype): Promise<ChunkKvSource> {
  const data = await precomputeChunk(engine, ids);
  const { numKvHeads: kvHeads, headDim } = engine.config;
  const buf = encodeChunkKv({ ...data, fingerprint: engine.kvFingerprint, kvHeads, headDim }, dtype);
  const { kv } = decodeChunkKv(buf);
  return memorySource({ ...data, keys: kv.keys, values: kv.values });
}

type Run = { logits: Float32Array; tokens: number[] };

export async function measureKvDtypeFidelity(
  engine: Engine,
  sets: { chunks: string[]; question: string }[],
  opts: {
    dtypes: KvDtype[];
    reference: KvDtype;
    configs: { name: string; o: BlendOptions }[];
    agreementTokens: number;
  },
): Promise<KvDtypeFidelityRow[]> {
  const tok = engine.model.tokenizer;
  const n = opts.agreementTokens;
  const run = async (sources: ChunkKvSource[], q: number[], o: BlendOptions): Promise<Run> => {
    const { cache, prefill } = await blendPrefill(engine, sources, q, o, n);
    const { tokens } = await decode(engine, cache, prefill.firstTokenLogits, {
      maxTokens: n,
      stopAtEos: false,
    });
    releaseCache(cache);
    return { logits: prefill.firstTokenLogits, tokens };
  };
  const agree = (a: Run, b: Run) => a.tokens.slice(0, n).filter((t, i) => t === b.tokens[i]).length / n;
  const dtypes = [opts.reference, ...opts.dtypes.filter((d) => d !== opts.reference)];
  const acc = new Map<string, { klF: number[]; agF: number[]; klR: number[]; agR: number[] }>();
  for (const s of sets) {
    const ids = s.chunks.map((c) => tok.encode(c));
    const q = tok.encode(s.question);
    const full = await run(ids.map(tokenIdsOnly), q, { mode: 'full' });
    const reference = new Map<string, Run>();
    for (const dtype of dtypes) {
      const sources = await Promise.all(ids.map((t) => storedSource(engine, t, dtype)));
      for (const c of opts.configs) {
        const r = await run(sources, q, c.o);
        if (dtype === opts.reference) reference.set(c.name, r);
        const ref = reference.get(c.name)!;
        const key = `${c.name}\u0000${dtype}`;
        const a = acc.get(key) ?? { klF: [], agF: [], klR: [], agR: [] };
        a.klF.push(klDivergence(full.logits, r.logits));
        a.agF.push(agree(r, full));
        a.klR.push(klDivergence(ref.logits, r.logits));
        a.agR.push(agree(r, ref));
        acc.set(key, a);
      }
    }
  }
  const mean = (x: number[]) => x.reduce((p, v) => p + v, 0) / x.length;
  const rows: KvDtypeFidelityRow[] = [];
  for (const c of opts.configs) {
    for (const kvDtype of dtypes) {
      const a = acc.get(`${c.name}\u0000${kvDtype}`)!;
      rows.push({
        config: c.name,
        kvDtype,
        meanKlVsFull: mean(a.klF),
        maxKlVsFull: Math.max(...a.klF),
        agreementVsFull: mean(a.agF),
        meanKlVsReference: mean(a.klR),
        maxKlVsReference: Math.max(...a.klR),
        agreementVsReference: mean(a.agR),
      });
    }
  }
  return rows;
}

import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { Engine, type EngineOptions } from '../../core/model/engine.js';
import { loadHfModel, type HfLoadOptions } from '../../core/model/loaders/hf.js';
import { fingerprintModel } from '../../core/model/fingerprint.js';
import { loadCacheStats } from '../../core/model/weights/load-cache.js';
import type { WeightFormat } from '../../core/model/weights/format.js';
import { HF_FIXTURES_DIR } from '../helpers/hf-fixtures.js';
import { CBQA_DIR } from '../helpers/models.js';
import { noWebGpu } from '../helpers/webgpu.js';

const PROMPT = [1, 40, 41, 42, 43, 44, 45];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'load-cache-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of cbqa-3M (or another model folder) in a folder of its own (the checkpoint the cache sits beside). */
function copyOfCbqa(name: string, from = CBQA_DIR): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(from))
    if (f !== '.cacheblend') copyFileSync(path.join(from, f), path.join(dir, f));
  return dir;
}

/** Load, build an engine, and return the first logits, the fingerprint and what the cache did meanwhile. */
async function run(
  dir: string,
  weights: WeightFormat,
  opts: HfLoadOptions = {},
  engineOpts: EngineOptions = {},
) {
  const before = { ...loadCacheStats };
  const model = await loadHfModel(dir, { weightCacheMinBytes: 0, ...opts });
  const engine = await Engine.create(model, { threads: 1, weights, ...engineOpts });
  const logits = await engine.forward(engine.newSequenceCache(PROMPT.length), PROMPT);
  await engine.dispose();
  const delta = Object.fromEntries(
    Object.entries(loadCacheStats).map(([k, v]) => [k, v - before[k as keyof typeof before]]),
  ) as typeof loadCacheStats;
  return { logits, fingerprint: model.fingerprint, model, delta };
}

const entriesOf = (dir: string) => {
  const root = path.join(dir, '.cacheblend');
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => readdirSync(path.join(root, d.name)).map((f) => path.join(root, d.name, f)));
};

/** cbqa-3M's 4 layers: a fused q/k/v, o, a fused gate/up and down each, and the output head. */
const MATRICES = 4 * 4 + 1;

describe('load cache: fingerprint and quantized weights kept beside the checkpoint', () => {
  it('small checkpoints are not cached by default (their folders stay as they are)', async () => {
    const dir = copyOfCbqa('small');
    const model = await loadHfModel(dir);
    expect(readdirSync(dir)).not.toContain('.cacheblend');
    expect(model.fingerprint).toBe(fingerprintModel(model.config, model.weights));
  });

  it('a second load reads them back (no fingerprint pass, no quantization) and computes the same logits', async () => {
    const dir = copyOfCbqa('second');
    const first = await run(dir, 'q8');
    expect(first.delta).toMatchObject({ fingerprintHits: 0, matrixHits: 0, matrixWrites: MATRICES });
    expect(first.fingerprint).toBe(fingerprintModel(first.model.config, first.model.weights));
    const second = await run(dir, 'q8');
    expect(second.delta).toMatchObject({ fingerprintHits: 1, matrixHits: MATRICES, matrixWrites: 0 });
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(Array.from(second.logits)).toEqual(Array.from(first.logits));
    // Without the cache: the same fingerprint and logits; q4 is a format of its own.
    const off = await run(dir, 'q8', { weightCache: 'off' });
    expect(off.delta).toMatchObject({ fingerprintHits: 0, matrixHits: 0, matrixWrites: 0 });
    expect(Array.from(off.logits)).toEqual(Array.from(first.logits));
    expect((await run(dir, 'q4')).delta).toMatchObject({ matrixHits: 0, matrixWrites: MATRICES });
  });

  it('bf16 weights converted to fp16 are kept too; fp16 checkpoints are read as stored', async () => {
    const dir = copyOfCbqa('bf16', path.join(HF_FIXTURES_DIR, 'llama-bf16'));
    const first = await run(dir, 'fp16');
    expect(first.delta.matrixWrites).toBeGreaterThan(0);
    const second = await run(dir, 'fp16');
    expect(second.delta).toMatchObject({ matrixHits: first.delta.matrixWrites, matrixWrites: 0 });
    expect(Array.from(second.logits)).toEqual(Array.from(first.logits));
    expect((await run(copyOfCbqa('f16'), 'fp16')).delta).toMatchObject({ matrixHits: 0, matrixWrites: 0 });
  });

  it.skipIf(noWebGpu)(
    'the device engine (WebGPU) reads them back too: fp16 scales, the same logits',
    async () => {
      const dir = copyOfCbqa('device');
      const gpu: EngineOptions = { executionProvider: 'webgpu', deviceDtype: 'float16' };
      const first = await run(dir, 'q8', {}, gpu);
      expect(first.delta.matrixWrites).toBe(MATRICES);
      const second = await run(dir, 'q8', {}, gpu);
      expect(second.delta).toMatchObject({ fingerprintHits: 1, matrixHits: MATRICES, matrixWrites: 0 });
      expect(Array.from(second.logits)).toEqual(Array.from(first.logits));
      // The CPU engine's fp32 scales are another conversion: not served to it.
      expect((await run(dir, 'q8')).delta).toMatchObject({ matrixHits: 0, matrixWrites: MATRICES });
    },
  );

  it('a truncated or corrupted entry is never served: recomputed, rewritten, the same logits', async () => {
    const dir = copyOfCbqa('corrupt');
    const first = await run(dir, 'q4');
    const [a, b] = entriesOf(dir).sort((x, y) => statSync(y).size - statSync(x).size);
    truncateSync(a, statSync(a).size - 7);
    const bytes = readFileSync(b);
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    writeFileSync(b, bytes);
    const again = await run(dir, 'q4');
    expect(again.delta).toMatchObject({ rejected: 2, matrixHits: MATRICES - 2, matrixWrites: 2 });
    expect(Array.from(again.logits)).toEqual(Array.from(first.logits));
    expect((await run(dir, 'q4')).delta).toMatchObject({ rejected: 0, matrixHits: MATRICES });
    // A fingerprint file edited by hand is recomputed, not believed.
    const fpFile = path.join(dir, '.cacheblend', 'fingerprint.json');
    const json = JSON.parse(readFileSync(fpFile, 'utf8')) as { fingerprint: string };
    json.fingerprint = json.fingerprint.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    writeFileSync(fpFile, JSON.stringify(json));
    const edited = await run(dir, 'q4');
    expect(edited.delta.fingerprintHits).toBe(0);
    expect(edited.fingerprint).toBe(first.fingerprint);
  });

  it('a changed checkpoint file is fingerprinted again; its old conversions are not served but deleted', async () => {
    const dir = copyOfCbqa('changed');
    const old = await run(dir, 'q8');
    const oldEntries = entriesOf(dir);
    // Same size, other values: every weight byte past the header scaled (the file's mtime changes too).
    const file = path.join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const f = new Float32Array(
      bytes.buffer,
      bytes.byteOffset + 8 + headerLen,
      (bytes.length - 8 - headerLen) / 4,
    );
    for (let i = 0; i < f.length; i++) f[i] *= 0.9;
    writeFileSync(file, bytes);
    const changed = await run(dir, 'q8');
    expect(changed.fingerprint).not.toBe(old.fingerprint);
    expect(changed.delta).toMatchObject({ fingerprintHits: 0, matrixHits: 0, matrixWrites: MATRICES });
    const fresh = await run(dir, 'q8', { weightCache: 'off' });
    expect(fresh.fingerprint).toBe(changed.fingerprint);
    expect(Array.from(changed.logits)).toEqual(Array.from(fresh.logits));
    expect(Array.from(changed.logits)).not.toEqual(Array.from(old.logits));
    for (const e of oldEntries) expect(() => statSync(e)).toThrow();
  });

  it("a checkpoint folder that cannot take the cache falls back to the user's cache folder", async () => {
    const dir = copyOfCbqa('readonly');
    writeFileSync(path.join(dir, '.cacheblend'), 'not a folder'); // as a read-only folder would: no mkdir
    const xdg = path.join(tmp, 'xdg');
    const saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = xdg;
    try {
      const first = await run(dir, 'q8');
      expect(first.delta.matrixWrites).toBe(MATRICES);
      expect(readdirSync(path.join(xdg, 'cacheblend', 'weights'))).toHaveLength(1);
      const second = await run(dir, 'q8');
      expect(second.delta).toMatchObject({ fingerprintHits: 1, matrixHits: MATRICES });
      expect(Array.from(second.logits)).toEqual(Array.from(first.logits));
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
  });

  it('two checkpoints under one cache root keep apart (a setting shared by models)', async () => {
    const root = path.join(tmp, 'shared-root');
    const a = copyOfCbqa('model-a');
    const b = copyOfCbqa('model-b');
    const fb = path.join(b, 'model.safetensors');
    const bytes = readFileSync(fb);
    bytes[bytes.length - 3] ^= 0x01; // one weight of the output norm or head differs
    writeFileSync(fb, bytes);
    const ra = await run(a, 'q8', { weightCache: root });
    const rb = await run(b, 'q8', { weightCache: root });
    expect(rb.fingerprint).not.toBe(ra.fingerprint);
    expect(rb.delta).toMatchObject({ fingerprintHits: 0, matrixHits: 0, matrixWrites: MATRICES });
    expect(readdirSync(root)).toHaveLength(2);
    expect((await run(a, 'q8', { weightCache: root })).delta.matrixHits).toBe(MATRICES);
  });

  it('CACHEBLEND_WEIGHT_CACHE reaches the loader: a folder (resolved), off, or unset', () => {
    expect(loadConfig({ CACHEBLEND_WEIGHT_CACHE: 'off' }).modelSource.weightCache).toBe('off');
    expect(loadConfig({ CACHEBLEND_WEIGHT_CACHE: 'wc' }).modelSource.weightCache).toBe(path.resolve('wc'));
    expect(loadConfig({}).modelSource.weightCache).toBeUndefined();
  });
});

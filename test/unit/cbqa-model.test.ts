import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { blendPrefill } from '../../core/blend/index.js';
import { Engine } from '../../core/model/engine.js';
import { detectModelFormat, loadModel } from '../../core/model/load.js';
import { HfTokenizer } from '../../core/model/tokenizers/hf.js';
import type { LoadedModel } from '../../core/model/types.js';
import {
  findAnswerRows,
  loadQuestions,
  measureAccuracy,
  prepareQuestions,
  QA_SETS,
} from '../../core/eval/index.js';
import { CBQA_DIR } from '../helpers/models.js';

/** cbqa-3M (models/cbqa-3M) through the Hugging Face path: config, tokenizer, answers. */
describe('cbqa-3M through the Hugging Face loader', () => {
  let model: LoadedModel;
  let engine: Engine;
  beforeAll(async () => {
    model = await loadModel(CBQA_DIR);
    engine = await Engine.create(model, { threads: 1 });
  });
  afterAll(() => engine.dispose());

  it('is read as a Hugging Face folder with the README shape: 4 layers, hidden 256, GQA 8/4, fp16', async () => {
    expect(await detectModelFormat(CBQA_DIR)).toBe('hf');
    const c = model.config;
    expect(c.architecture).toBe('llama');
    expect([c.numLayers, c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim]).toEqual([4, 256, 8, 4, 32]);
    expect([c.intermediateSize, c.vocabSize, c.ropeTheta, c.tieWordEmbeddings]).toEqual([
      688,
      640,
      10000,
      false,
    ]);
    expect(c.weightDtype).toBe('float16');
    expect(c.ropeLayout).toBe('half');
  });

  it('tokenizes whole words with WordPiece, BOS <sep> (id 1), unknown words to <pad>', () => {
    const tok = model.tokenizer as HfTokenizer;
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect(tok.bosTokenId).toBe(1);
    expect(model.config.bosTokenId).toBe(1);
    expect(tok.tokenToId('<sep>')).toBe(1);
    expect(tok.eosTokenIds).toEqual([4]); // <eos>
    const text = 'P268 owns O70 . O48 is yellow . P252 bought O79 . <sep>';
    const ids = tok.encode(text);
    const words = text.split(' ');
    expect(ids).toHaveLength(words.length); // one token per word, none split into pieces
    expect(ids.map((i) => tok.idToToken(i))).toEqual(words);
    // ids from tokenizer.json's vocabulary: <q> 2, color 17, of 11, O79 548, ? 6, <a> 3
    expect(tok.encode('<q> color of O79 ? <a>')).toEqual([2, 17, 11, 548, 6, 3]);
    expect(tok.encode('P268 dragon')).toEqual([tok.tokenToId('P268'), 0]); // <pad> is the unknown token
    expect(tok.decode(tok.encode('O48 is yellow .'))).toBe('O48 is yellow .');
  });

  it('answers a cross-chunk question through cacheblend generate (full, reuse, blend)', async () => {
    const chunks = [
      'O69 is black . P268 owns O70 . P162 owns O71 . O48 is yellow . P243 owns O91 . P242 bought O128 . <sep>',
      'it is gray . O70 is green . the mayor of C147 is P222 . P55 owns O61 . P252 bought O79 . <sep>',
      'it is pink . O91 is purple . P65 bought O129 . it is pink . P173 lives in C147 . <sep>',
    ];
    for (const mode of ['full', 'reuse', 'blend']) {
      let out = '';
      const args = ['generate', '--model', CBQA_DIR, '--mode', mode, '--max-tokens', '1', '--json'];
      for (const c of chunks) args.push('--chunk', c);
      const code = await main([...args, '--question', '<q> color of O79 ? <a>'], (s) => (out += s));
      expect(code).toBe(0);
      const r = JSON.parse(out);
      expect(r.text, mode).toBe(' pink');
      expect(r.promptTokens).toBe(1 + chunks.join(' ').split(' ').length + 6);
    }
  });

  it('answers the first 60 easy questions in full prefill, as its README reports (1.000)', async () => {
    const prepared = await prepareQuestions(engine, loadQuestions(CBQA_DIR).easy.slice(0, 60));
    const full = await measureAccuracy(engine, prepared, { mode: 'full' });
    expect(full.accuracy).toBe(1);
  });

  it('blend reports the rows it recomputed, and the analysis hook can force a row in', async () => {
    const [p] = await prepareQuestions(engine, loadQuestions(CBQA_DIR).easy.slice(1, 2)); // a coref_cross question
    const rows = findAnswerRows(p.q)!;
    // CacheBlend's K deviation: the analysis hook ranks its scores (the default, fused, ranks fused scores).
    const opts = { mode: 'blend' as const, ratio: 0.15, selection: 'deviation' as const };
    const { prefill } = await blendPrefill(engine, p.sources, p.questionIds, opts);
    expect(prefill.selected).toHaveLength(3); // check layer 1 … layer 3
    const sel = [...prefill.selected![0]];
    expect(sel).toHaveLength(prefill.recomputedTokens);
    expect(sel.length).toBe(Math.floor(0.15 * prefill.contextTokens));
    expect(sel.every((r, i) => r >= 1 && r <= prefill.contextTokens && (i === 0 || r > sel[i - 1]))).toBe(
      true,
    );
    expect(sel).not.toContain(rows.colour); // K at layer 1 never ranks colour rows high (docs/accuracy.md)
    const forced = await blendPrefill(engine, p.sources, p.questionIds, {
      ...opts,
      adjustDeviations: (_l, candidates, dev) =>
        candidates.forEach((r, i) => r === rows.colour && (dev[i] = Infinity)),
    });
    expect([...forced.prefill.selected![0]]).toContain(rows.colour);
    expect(forced.prefill.recomputedTokens).toBe(prefill.recomputedTokens);
  });

  it('every question of both public sets states its answer where the miss analysis looks for it', () => {
    const sets = loadQuestions(CBQA_DIR);
    for (const set of QA_SETS) {
      for (const q of sets[set]) {
        const rows = findAnswerRows(q);
        expect(rows, `${set}: ${q.question}`).not.toBeNull();
        expect(rows!.crossesChunks).toBe(q.type === 'coref_cross');
      }
    }
  });

  it('holds the files its README lists, byte for byte (sha256)', () => {
    const sha = (f: string) =>
      createHash('sha256')
        .update(readFileSync(`${CBQA_DIR}/${f}`))
        .digest('hex');
    expect(sha('model.safetensors')).toBe('35c13fca37913d00ea482e847f00a6c99ab04bf81ee4da6f0c05dfbbbf1de95a');
    expect(sha('tokenizer.json')).toBe('98b9f9dd3d4467d01e614700c72a2e5acc291c23afe77139e00f45eaa71f55e4');
    expect(sha('questions.json')).toBe('b59bada077b7da7ba8d09f14846a3e1475cab8fb2f47c265af6fa4f2eabf21ef');
  });
});

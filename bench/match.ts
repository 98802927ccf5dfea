/**
 * Automatic chunk matching cost (core/retrieval/span-matcher.ts): a tenant's store of 1k, 10k and 100k
 * chunks of synthetic text (40 Zipf-distributed words each, as bench:retrieval), and prompts of 4,096
 * tokens or more (counted with stories260K's tokenizer, and at least 16,384 characters: 4,096 tokens at the
 * ~4 characters a token of a large-vocabulary tokenizer) made of random text of the same distribution with
 * 0, 3 or 10 stored chunks pasted in, and one made of stored chunks only (every position an anchor hit).
 * Medians of 50 scans each; also the matcher's build time and heap. Again with a tenth of the chunks short
 * sentences (under the anchor: matched whole, at sentence boundaries) and prompts of short sentences. The Redis read of the matched chunks'
 * token ids (one pipelined HGET each) is not included. Prints a table, writes bench/results/match.json.
 */
import { loadLlama2cModel } from '../core/model/loaders/llama2c.js';
import { SpanMatcher, type MatchableChunk } from '../core/retrieval/span-matcher.js';
import { seededRandom } from '../core/model/generate.js';
import { machine, median, printTable, writeResult } from './common.js';
import { heapMiB, zipfWords } from './synthetic.js';

const SIZES = [1_000, 10_000, 100_000];
const WORDS_PER_CHUNK = 40;
const VOCAB = 20_000;
const REPS = 50;
const PROMPT_TOKENS = 4_096;
/** 4,096 tokens of a large-vocabulary tokenizer (~4 characters a token): more text than stories260K's. */
const PROMPT_CHARS = 16_384;

const rand = seededRandom(7);
const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'to', 'vi', 'an', 'el', 'or', 'us'];
const words = Array.from({ length: VOCAB }, (_, i) => {
  let w = '';
  for (let n = i + 1; n > 0; n = Math.floor(n / SYLLABLES.length)) w += SYLLABLES[n % SYLLABLES.length];
  return w;
});
const { sentence } = zipfWords(words, rand);

const tok = (await loadLlama2cModel(new URL('../../models/stories260K', import.meta.url).pathname)).tokenizer;

/** About `words` words of short sentences (2 to 6 words, each ending with '. '): a boundary every few words. */
function shortSentences(words: number): string {
  const out: string[] = [];
  for (let w = 0; w < words;) {
    const n = 2 + Math.floor(rand() * 5);
    out.push(`${sentence(n)}.`);
    w += n;
  }
  return out.join(' ');
}

/**
 * Random text with `pasted` chunks placed among it, grown until it is PROMPT_TOKENS tokens or more; of
 * short sentences when `boundaries` (where short chunks are looked for), else of 200-word lines.
 */
function prompt(chunks: MatchableChunk[], pasted: number, boundaries = false): string {
  const parts = ['Answer from the context.\n\nContext:\n'];
  for (let i = 0; i < pasted; i++) parts.push(`${chunks[Math.floor(rand() * chunks.length)].text}\n\n`);
  let text = parts.join('');
  while (text.length < PROMPT_CHARS || tok.encode(text).length < PROMPT_TOKENS)
    text += `${boundaries ? shortSentences(200) : sentence(200)}\n`;
  const at = Math.floor(text.length / 2);
  return `${text.slice(0, at)}\n\nQuestion: ${text.slice(at)}`;
}

/** Only stored chunks, back to back, to the same length. */
function allChunks(chunks: MatchableChunk[], chars: number): string {
  let text = '';
  while (text.length < chars) text += `${chunks[Math.floor(rand() * chunks.length)].text}\n\n`;
  return text;
}

function scan(m: SpanMatcher, text: string): { ms: number; found: number } {
  const times: number[] = [];
  let found = 0;
  for (let r = 0; r < REPS + 5; r++) {
    const t0 = performance.now();
    found = m.match('t', text).length;
    if (r >= 5) times.push(performance.now() - t0); // the first scans warm the JIT
  }
  return { ms: median(times), found };
}

/**
 * Each store size twice: chunks of WORDS_PER_CHUNK words; and with every SHORT_EVERY-th chunk a short
 * sentence (1 to 4 words, under the matcher's anchor), scanned over prompts of short sentences, where
 * short chunks are looked for at every sentence.
 */
const SHORT_EVERY = 10;
const rows = [0, SHORT_EVERY].flatMap((shortEvery) => SIZES.map((n) => measure(n, shortEvery)));

function measure(n: number, shortEvery: number) {
  const chunks = Array.from({ length: n }, (_, i) => ({
    key: `k${i}`,
    text:
      shortEvery && i % shortEvery === 0
        ? `${sentence(1 + Math.floor(rand() * 4))}.`
        : sentence(WORDS_PER_CHUNK),
    document: `doc-${Math.floor(i / 10)}`,
    index: i % 10,
  }));
  const before = heapMiB();
  const m = new SpanMatcher();
  const t0 = performance.now();
  for (let d = 0; d < n / 10; d++) m.add('t', `doc-${d}`, chunks.slice(d * 10, d * 10 + 10));
  const buildMs = performance.now() - t0;
  const heap = heapMiB() - before;
  const prompts = [0, 3, 10].map((k) => prompt(chunks, k, shortEvery > 0));
  const scans = prompts.map((p) => scan(m, p));
  const dense = scan(m, allChunks(chunks, prompts[0].length));
  return {
    chunks: n,
    shortChunks: shortEvery ? Math.ceil(n / shortEvery) : 0,
    buildMs,
    heapMiB: heap,
    promptChars: prompts[0].length,
    promptTokens: tok.encode(prompts[0]).length,
    none: scans[0],
    three: scans[1],
    ten: scans[2],
    onlyChunks: dense,
  };
}

printTable(
  [
    'chunks',
    'short',
    'build ms',
    'heap MiB',
    'prompt chars',
    'tokens',
    '0 pasted ms',
    '3 ms',
    '10 ms',
    'all chunks ms',
    'found',
  ],
  rows.map((r) => [
    r.chunks,
    r.shortChunks,
    r.buildMs,
    r.heapMiB,
    r.promptChars,
    r.promptTokens,
    r.none.ms,
    r.three.ms,
    r.ten.ms,
    r.onlyChunks.ms,
    `${r.none.found}/${r.three.found}/${r.ten.found}/${r.onlyChunks.found}`,
  ]),
);
writeResult('match.json', {
  machine: machine('cpu'),
  note: 'median ms of one SpanMatcher.match over the prompt; texts are synthetic (Zipf words)',
  corpus: { wordsPerChunk: WORDS_PER_CHUNK, vocabulary: VOCAB, zipf: 1, chunksPerDocument: 10 },
  reps: REPS,
  promptTokensAtLeast: PROMPT_TOKENS,
  promptCharsAtLeast: PROMPT_CHARS,
  heapNote: 'heap of the matcher alone: the chunk texts are held by the caller already',
  tokenizer: 'stories260K',
  rows,
});
console.log('wrote bench/results/match.json');

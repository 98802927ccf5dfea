/**
 * Retrieval benchmark: the per-process BM25 index (core/retrieval) at 1k, 25k, 50k and 100k chunks of synthetic
 * text (40 words each, Zipf-distributed over a 20,000-word vocabulary, 10 chunks per document). Measures
 * building the index (what an API process does on start after reading the manifests), its heap, and the
 * median time to rank a question over the whole corpus and over 10 named documents, and to select the
 * chunks that fit a 4,096-token budget. Two kinds of question: 8 words drawn like the text (so several are
 * among the most common words, matching most chunks: the worst case) and 4 content words (drawn uniformly
 * from ranks 500 and up, as a question left with its topic words after stop-word removal). Prints a table,
 * writes bench/results/retrieval.json and .svg.
 */
import { CorpusIndex, selectChunks, type Candidate } from '../core/retrieval/index.js';
import { seededRandom } from '../core/model/generate.js';
import { lineChart, machine, median, printTable, writeResult } from './common.js';
import { heapMiB, zipfWords } from './synthetic.js';

const SIZES = [1_000, 25_000, 50_000, 100_000];
const WORDS_PER_CHUNK = 40;
const CHUNKS_PER_DOC = 10;
const VOCAB = 20_000;
const QUERIES = 50;

const rand = seededRandom(42);
const words = Array.from({ length: VOCAB }, (_, i) => `w${i.toString(36)}x`);
const { sentence } = zipfWords(words, rand);

function timed<T>(fn: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = fn();
  return { ms: performance.now() - t0, value };
}

interface Row {
  chunks: number;
  buildMs: number;
  heapMiB: number;
  rankCorpusMs: number;
  rankNamedMs: number;
  selectMs: number;
  matchedPerQuery: number;
  rankContentMs: number;
  matchedPerContentQuery: number;
}

/** A question of `n` content words: uniform over the vocabulary's ranks 500 and up. */
const contentQuestion = (n: number) =>
  Array.from({ length: n }, () => words[500 + Math.floor(rand() * (VOCAB - 500))]).join(' ');

function run(chunks: number): Row {
  const docs = chunks / CHUNKS_PER_DOC;
  const texts = Array.from({ length: docs }, () =>
    Array.from({ length: CHUNKS_PER_DOC }, (_, c) => ({
      key: `k${c}`,
      text: sentence(WORDS_PER_CHUNK),
      tokens: 60,
    })),
  );
  const before = heapMiB();
  const index = new CorpusIndex();
  const build = timed(() => texts.forEach((t, d) => index.set(`doc-${d}`, t)));
  const heap = heapMiB() - before;
  const questions = Array.from({ length: QUERIES }, () => sentence(8));
  const named = new Set(Array.from({ length: 10 }, (_, i) => `doc-${Math.floor((i * docs) / 10)}`));
  const corpus = questions.map((q) => timed(() => index.rank(q)));
  const namedRuns = questions.map((q) => timed(() => index.rank(q, named)).ms);
  const content = Array.from({ length: QUERIES }, () => contentQuestion(4)).map((q) =>
    timed(() => index.rank(q)),
  );
  const selects = corpus.map(({ value }) => {
    const cands: Candidate[] = value.map((r, order) => ({ ...r, order }));
    return timed(() => selectChunks(cands, 4_096, { order: 'document' })).ms;
  });
  return {
    chunks,
    buildMs: build.ms,
    heapMiB: heap,
    rankCorpusMs: median(corpus.map((c) => c.ms)),
    rankNamedMs: median(namedRuns),
    selectMs: median(selects),
    matchedPerQuery: median(corpus.map((c) => c.value.length)),
    rankContentMs: median(content.map((c) => c.ms)),
    matchedPerContentQuery: median(content.map((c) => c.value.length)),
  };
}

const rows = SIZES.map(run);
printTable(
  [
    'chunks',
    'build ms',
    'build chunks/s',
    'heap MiB',
    'rank corpus ms',
    'matched',
    'rank 10 docs ms',
    'select ms',
    'content q: rank ms',
    'matched',
  ],
  rows.map((r) => [
    r.chunks,
    r.buildMs,
    Math.round((r.chunks / r.buildMs) * 1000),
    r.heapMiB,
    r.rankCorpusMs,
    r.matchedPerQuery,
    r.rankNamedMs,
    r.selectMs,
    r.rankContentMs,
    r.matchedPerContentQuery,
  ]),
);
writeResult('retrieval.json', {
  machine: machine('cpu'),
  corpus: { wordsPerChunk: WORDS_PER_CHUNK, chunksPerDocument: CHUNKS_PER_DOC, vocabulary: VOCAB, zipf: 1 },
  queries: QUERIES,
  questionWords: { likeText: 8, content: 4 },
  budgetTokens: 4_096,
  rows,
});
writeResult(
  'retrieval.svg',
  lineChart({
    title: 'BM25 index (MiniSearch): median ms per question',
    xLabel: 'chunks in the corpus',
    yLabel: 'ms',
    series: [
      { name: 'rank the whole corpus', points: rows.map((r) => ({ x: r.chunks, y: r.rankCorpusMs })) },
      { name: 'rank, 4 content words', points: rows.map((r) => ({ x: r.chunks, y: r.rankContentMs })) },
      { name: 'rank 10 named documents', points: rows.map((r) => ({ x: r.chunks, y: r.rankNamedMs })) },
      { name: 'select within 4,096 tokens', points: rows.map((r) => ({ x: r.chunks, y: r.selectMs })) },
    ],
    logY: true,
  }),
);
console.log('wrote bench/results/retrieval.json|svg');

/**
 * The ranking index over every chunk of every document: BM25 (MiniSearch's BM25+, chosen for incremental
 * add and discard — documents come and go one at a time — with no dependencies) over chunk texts. It lives
 * in each API process's memory; corpus-sync.ts keeps it following ingests and deletes.
 */
import MiniSearch from 'minisearch';
import { parseDocumentName } from '../documents/names.js';
import { SpanMatcher } from './span-matcher.js';

/** One indexed chunk; `id` is `<document>#<index>`. */
interface IndexedChunk {
  id: string;
  document: string;
  index: number;
  text: string;
  tokens: number;
  key: string;
}

/** A chunk as ranking sees it. */
export interface RankedChunk {
  document: string;
  index: number;
  key: string;
  tokens: number;
  /** BM25 score of the chunk for the question (0: no term in common). */
  score: number;
}

export interface IndexableChunk {
  key: string;
  text: string;
  tokens: number;
}

// Words too common to say what a chunk is about. BM25's IDF discounts them already; dropping them keeps a
// question like "What was the name of the dog?" from matching every chunk that says "the".
const STOP_WORDS = new Set(
  (
    'a an and are as at be but by did do does for from had has have he her his how i if in into is it its ' +
    'me my no not of on or our she so that the their them then there these they this to was we were what ' +
    'when where which who whom why will with you your'
  ).split(' '),
);

function processTerm(term: string): string | null {
  const t = term.toLowerCase();
  return t.length === 0 || STOP_WORDS.has(t) ? null : t;
}

export class CorpusIndex {
  private readonly search = new MiniSearch<IndexedChunk>({
    idField: 'id',
    fields: ['text'],
    storeFields: ['document', 'index', 'tokens', 'key'],
    processTerm,
  });
  /** Each indexed document's chunk keys, in order. */
  private readonly docs = new Map<string, string[]>();
  /** Each indexed document's chunks as the span matcher holds them. */
  private readonly chunkTexts = new Map<string, { key: string; text: string }[]>();
  /** Every tenant's chunks by text, for finding them inside prompts. */
  readonly spans = new SpanMatcher();

  get documentCount(): number {
    return this.docs.size;
  }

  get chunkCount(): number {
    return this.search.documentCount;
  }

  /** Ids of the indexed documents. */
  documents(): string[] {
    return [...this.docs.keys()];
  }

  /** The chunk keys the index holds for a document, or undefined when it holds none. */
  keysOf(document: string): readonly string[] | undefined {
    return this.docs.get(document);
  }

  /** Index a document's chunks, replacing what was indexed for it. */
  set(document: string, chunks: IndexableChunk[]): void {
    this.remove(document);
    this.search.addAll(
      chunks.map((c, index) => ({
        id: `${document}#${index}`,
        document,
        index,
        text: c.text,
        tokens: c.tokens,
        key: c.key,
      })),
    );
    this.docs.set(
      document,
      chunks.map((c) => c.key),
    );
    const { tenant, id } = parseDocumentName(document);
    this.spans.add(
      tenant,
      document,
      chunks.map((c, index) => ({ key: c.key, text: c.text, document: id, index })),
    );
    this.chunkTexts.set(
      document,
      chunks.map((c) => ({ key: c.key, text: c.text })),
    );
  }

  remove(document: string): void {
    const keys = this.docs.get(document);
    if (!keys) return;
    this.search.discardAll(keys.map((_, i) => `${document}#${i}`));
    this.docs.delete(document);
    this.spans.remove(parseDocumentName(document).tenant, document, this.chunkTexts.get(document) ?? []);
    this.chunkTexts.delete(document);
  }

  /**
   * Chunks matching the question, best first: only those of `documents` when given, else the whole corpus.
   * Chunks with no term in common are not returned.
   */
  rank(question: string, documents?: ReadonlySet<string>): RankedChunk[] {
    const results = this.search.search(question, {
      ...(documents && { filter: (r) => documents.has(r.document as string) }),
    });
    return results.map((r) => ({
      document: r.document as string,
      index: r.index as number,
      key: r.key as string,
      tokens: r.tokens as number,
      score: r.score,
    }));
  }
}

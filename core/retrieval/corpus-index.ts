/**
 * The ranking index over every chunk of every document: BM25 (MiniSearch's BM25+, chosen for incremental
 * add and remove — documents come and go one at a time — with no dependencies) over chunk texts. It lives
 * in each API process's memory; corpus-sync.ts keeps it following ingests and deletes.
 *
 * One MiniSearch per tenant: BM25's statistics (how many chunks hold a term, the average length) are a
 * tenant's own, so one tenant's documents never move another's scores. Chunks leave with `remove` (their
 * texts are kept for it), not `discard`: a discarded chunk's terms stay counted until a vacuum, which
 * skews the statistics meanwhile, down to negative scores after many removals.
 */
import MiniSearch from 'minisearch';
import { DEFAULT_TENANT } from '../config/index.js';
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

function tenantIndex(): MiniSearch<IndexedChunk> {
  return new MiniSearch<IndexedChunk>({
    idField: 'id',
    fields: ['text'],
    storeFields: ['document', 'index', 'tokens', 'key'],
    processTerm,
  });
}

export class CorpusIndex {
  private readonly tenants = new Map<string, MiniSearch<IndexedChunk>>();
  /** Each indexed document's chunks (what `remove` needs), in order. */
  private readonly docs = new Map<string, IndexedChunk[]>();
  /** Every tenant's chunks by text, for finding them inside prompts. */
  readonly spans = new SpanMatcher();

  get documentCount(): number {
    return this.docs.size;
  }

  get chunkCount(): number {
    let n = 0;
    for (const search of this.tenants.values()) n += search.documentCount;
    return n;
  }

  private tenantOf(document: string): string {
    return parseDocumentName(document).tenant;
  }

  /** Ids of the indexed documents. */
  documents(): string[] {
    return [...this.docs.keys()];
  }

  /** The chunk keys the index holds for a document, or undefined when it holds none. */
  keysOf(document: string): readonly string[] | undefined {
    return this.docs.get(document)?.map((c) => c.key);
  }

  /** Index a document's chunks, replacing what was indexed for it. */
  set(document: string, chunks: IndexableChunk[]): void {
    this.remove(document);
    const tenant = this.tenantOf(document);
    let search = this.tenants.get(tenant);
    if (!search) this.tenants.set(tenant, (search = tenantIndex()));
    const indexed = chunks.map((c, index) => ({
      id: `${document}#${index}`,
      document,
      index,
      text: c.text,
      tokens: c.tokens,
      key: c.key,
    }));
    search.addAll(indexed);
    this.docs.set(document, indexed);
    const { id } = parseDocumentName(document);
    this.spans.add(
      tenant,
      document,
      chunks.map((c, index) => ({ key: c.key, text: c.text, document: id, index })),
    );
  }

  remove(document: string): void {
    const indexed = this.docs.get(document);
    if (!indexed) return;
    const tenant = this.tenantOf(document);
    const search = this.tenants.get(tenant)!;
    search.removeAll(indexed);
    this.docs.delete(document);
    if (search.documentCount === 0) this.tenants.delete(tenant);
    this.spans.remove(tenant, document, indexed);
  }

  /**
   * One tenant's chunks matching the question, best first: only those of `documents` (names) when given,
   * else the tenant's whole corpus. Chunks with no term in common are not returned.
   */
  rank(question: string, documents?: ReadonlySet<string>, tenant = DEFAULT_TENANT): RankedChunk[] {
    const search = this.tenants.get(tenant);
    if (!search) return [];
    const results = search.search(question, {
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

/**
 * Retrieval for a query: rank chunks by relevance to the question and keep the best that fit the context
 * budget. With `documents`, every chunk of those documents is a candidate (unmatched ones rank last, in
 * document order): when they all fit, all are used. Without, the whole corpus is searched and only chunks
 * sharing a term with the question are candidates.
 */
import type { DocumentService } from '../documents/documents.js';
import type { BlendChunkRef, RetrievalSummary } from '../queue/contracts.js';
import type { CorpusSync } from './corpus-sync.js';
import { selectChunks, type Candidate, type ChunkOrder } from './select.js';

export interface RetrieveRequest {
  question: string;
  /** Search only these documents (in this order); all of the corpus when absent. */
  documents?: string[];
  /** Context tokens the chunks may take. */
  budget: number;
  topK?: number;
  order: ChunkOrder;
  /** How long to wait for the index's first build. */
  readyWaitMs: number;
}

export interface Retrieved {
  /** The chunks to put in the prompt, in prompt order. */
  refs: BlendChunkRef[];
  summary: RetrievalSummary;
}

const round = (x: number) => Math.round(x * 1e4) / 1e4;

export class Retriever {
  constructor(
    private readonly docs: DocumentService,
    readonly sync: CorpusSync,
  ) {}

  async retrieve(req: RetrieveRequest): Promise<Retrieved> {
    // Named documents are brought up to date one by one; only a corpus search needs the whole index.
    if (req.documents) return this.fromDocuments(req, [...new Set(req.documents)]);
    await this.sync.whenReady(req.readyWaitMs);
    return this.fromCorpus(req);
  }

  private async fromDocuments(req: RetrieveRequest, ids: string[]): Promise<Retrieved> {
    const perDoc = await this.docs.chunkRefsByDocument(ids); // Redis is the truth; unknown ids are 404s
    // Another process may have just ingested one of them: bring the index up to date with Redis first.
    await Promise.all(
      ids.map((id, i) =>
        this.sync.ensureCurrent(
          id,
          perDoc[i].map((r) => r.key),
        ),
      ),
    );
    const scores = new Map(
      this.sync.index.rank(req.question, new Set(ids)).map((r) => [`${r.document}#${r.index}`, r.score]),
    );
    const refs = new Map<string, BlendChunkRef>();
    const candidates: Candidate[] = [];
    ids.forEach((document, d) =>
      perDoc[d].forEach((ref, index) => {
        const id = `${document}#${index}`;
        refs.set(id, ref);
        const score = scores.get(id) ?? 0;
        candidates.push({
          document,
          index,
          key: ref.key,
          tokens: ref.tokenIds.length,
          score,
          order: candidates.length,
        });
      }),
    );
    const { used, leftOut } = selectChunks(candidates, req.budget, req);
    return {
      refs: used.map((c) => refs.get(`${c.document}#${c.index}`)!),
      summary: summarize(used, leftOut, req),
    };
  }

  private async fromCorpus(req: RetrieveRequest): Promise<Retrieved> {
    const ranked = this.sync.index.rank(req.question);
    const inDocumentOrder = [...ranked].sort((a, b) =>
      a.document === b.document ? a.index - b.index : a.document < b.document ? -1 : 1,
    );
    const order = new Map(inDocumentOrder.map((r, i) => [`${r.document}#${r.index}`, i]));
    const candidates = ranked.map((r) => ({ ...r, order: order.get(`${r.document}#${r.index}`)! }));
    const { used, leftOut } = selectChunks(candidates, req.budget, req);
    // A chunk released since it was indexed has no token record: leave it out rather than fail the query.
    const tokens = await this.docs.tokensOf(used.map((c) => c.key));
    const present = used.filter((c) => tokens.has(c.key));
    return {
      refs: present.map((c) => ({ key: c.key, tokenIds: tokens.get(c.key)! })),
      summary: summarize(present, leftOut + used.length - present.length, req),
    };
  }
}

function summarize(used: Candidate[], leftOut: number, req: RetrieveRequest): RetrievalSummary {
  return {
    chunks: used.map((c) => ({
      document: c.document,
      index: c.index,
      score: round(c.score),
      tokens: c.tokens,
    })),
    leftOut,
    budget: req.budget,
    order: req.order,
  };
}

/**
 * Retrieval for a query: rank chunks by relevance to the question and keep the best that fit the context
 * budget. With `documents`, every chunk of those documents is a candidate (unmatched ones rank last, in
 * document order): when they all fit, all are used. Without, the tenant's whole corpus is searched and only
 * chunks sharing a term with the question are candidates. Documents are the requesting tenant's only.
 */
import type { DocumentService } from '../documents/documents.js';
import { documentName, parseDocumentName } from '../documents/names.js';
import { KvMismatchError, UnavailableError } from '../errors.js';
import type { BlendChunkRef, RetrievalSummary } from '../queue/contracts.js';
import type { CorpusSync } from './corpus-sync.js';
import { matchPrompt, type MatchedPrompt } from './match-prompt.js';
import { selectChunks, type Candidate, type ChunkOrder } from './select.js';

export interface RetrieveRequest {
  question: string;
  /** Whose documents: names and the corpus are this tenant's only. */
  tenant: string;
  /** Search only these documents (in this order); all of the tenant's corpus when absent. */
  documents?: string[];
  /** Context tokens the chunks may take. */
  budget: number;
  /** Most chunks the named documents may hold in all (MAX_QUERY_CHUNKS): more is a 413 before any is read. */
  maxChunks: number;
  /** The most chunks put into the prompt (the request's `topK`). */
  retrievalTopK?: number;
  order: ChunkOrder;
  /** How long to wait for the index's first build. */
  readyWaitMs: number;
  /** The serving model's fingerprint: chunks whose token ids belong to another model are never used. */
  fingerprint?: string;
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

  /** The tenant's stored chunks found inside a prompt's pieces (see match-prompt.ts); null when none. */
  async match(pieces: string[], tenant: string, readyWaitMs: number): Promise<MatchedPrompt | null> {
    return matchPrompt(this.docs, this.sync, tenant, pieces, readyWaitMs);
  }

  async retrieve(req: RetrieveRequest): Promise<Retrieved> {
    // Named documents are brought up to date one by one; only a corpus search needs the whole index.
    if (req.documents) return this.fromDocuments(req, [...new Set(req.documents)]);
    await this.sync.whenReady(req.readyWaitMs);
    return this.fromCorpus(req);
  }

  /**
   * Candidates are the named documents' chunks as keys and token counts (their sizes checked first); token
   * ids are read only for the chunks chosen, so a query naming large documents costs their key lists, not
   * their tokens.
   */
  private async fromDocuments(req: RetrieveRequest, ids: string[]): Promise<Retrieved> {
    const perDoc = await this.docs.chunkListsByDocument(ids, req.tenant, req.maxChunks); // unknown ids: 404
    const names = ids.map((id) => documentName(req.tenant, id));
    // Another process may have just ingested one of them: bring the index up to date with Redis first.
    await Promise.all(
      names.map((name, i) =>
        this.sync.ensureCurrent(
          name,
          perDoc[i].map((c) => c.key),
        ),
      ),
    );
    const scores = new Map(
      this.sync.index
        .rank(req.question, new Set(names), req.tenant)
        .map((r) => [`${r.document}#${r.index}`, r.score]),
    );
    const candidates: Candidate[] = [];
    ids.forEach((document, d) =>
      perDoc[d].forEach((c, index) => {
        const score = scores.get(`${names[d]}#${index}`) ?? 0;
        candidates.push({ document, index, key: c.key, tokens: c.tokens, score, order: candidates.length });
      }),
    );
    const { used, leftOut } = selectChunks(candidates, req.budget, req);
    await this.refuseOtherModels(used, req.fingerprint);
    const tokens = await this.docs.tokensOf(used.map((c) => c.key));
    const refs = used.map((c) => {
      const tokenIds = tokens.get(c.key);
      if (!tokenIds)
        throw new UnavailableError(`chunk ${c.key} has no token record (document being changed?)`);
      return { key: c.key, tokenIds };
    });
    return { refs, summary: summarize(used, leftOut, req) };
  }

  /** Named documents whose chunks hold another model's token ids are refused (KV_MISMATCH, 409), naming them. */
  private async refuseOtherModels(used: Candidate[], fingerprint: string | undefined): Promise<void> {
    if (!fingerprint) return;
    const fps = await this.docs.fingerprintsOf(used.map((c) => c.key));
    const other = [
      ...new Set(used.filter((c) => fps.has(c.key) && fps.get(c.key) !== fingerprint).map((c) => c.document)),
    ];
    if (other.length === 0) return;
    throw new KvMismatchError(
      `documents: ${other.map((d) => JSON.stringify(d)).join(', ')} ${other.length === 1 ? 'was' : 'were'} ingested under another model, whose token ids this model cannot use; the service re-tokenizes such documents for the model it runs when it starts: retry once GET /v1/documents/<id> says ready, or ingest ${other.length === 1 ? 'it' : 'them'} again`,
    );
  }

  /** The tenant's chunks sharing a term with the question (ranked in the tenant's own index). */
  private async fromCorpus(req: RetrieveRequest): Promise<Retrieved> {
    const ranked = this.sync.index
      .rank(req.question, undefined, req.tenant)
      .map((r) => ({ ...r, document: parseDocumentName(r.document).id }));
    const inDocumentOrder = [...ranked].sort((a, b) =>
      a.document === b.document ? a.index - b.index : a.document < b.document ? -1 : 1,
    );
    const order = new Map(inDocumentOrder.map((r, i) => [`${r.document}#${r.index}`, i]));
    const candidates = ranked.map((r) => ({ ...r, order: order.get(`${r.document}#${r.index}`)! }));
    const { used, leftOut } = selectChunks(candidates, req.budget, req);
    // A chunk released since it was indexed has no token record, and one of another model's documents (not
    // re-tokenized yet) no token ids for this model: leave them out rather than fail the query.
    const tokens = await this.docs.tokensOf(used.map((c) => c.key));
    const fps = req.fingerprint ? await this.docs.fingerprintsOf(used.map((c) => c.key)) : null;
    const present = used.filter((c) => tokens.has(c.key) && (!fps || fps.get(c.key) === req.fingerprint));
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

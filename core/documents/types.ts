/** The shapes a DocumentService takes and returns: documents as the API writes and reports them. */
export type ChunkState = 'pending' | 'ready' | 'failed' | 'deleting' | 'unreferenced';
export type DocumentState = 'pending' | 'ready' | 'failed';

export interface DocumentInput {
  id?: string;
  text?: string;
  chunks?: string[];
  metadata?: Record<string, unknown>;
}

export interface IngestOptions {
  /** Most tokens per chunk (CHUNK_TOKEN_BUDGET; capped below the model's context). */
  budget: number;
  /** Owner (default: DEFAULT_TENANT). */
  tenant?: string;
  /** Cache salt of the tenant's chunk keys (see names.ts `cacheSalt`; default none). */
  salt?: string;
  /** Id of the request (or batch run) that ingests, carried into its precompute jobs for the logs. */
  requestId?: string;
}

export interface IngestResult {
  id: string;
  chunks: number;
  /** The document's chunk keys, in order. */
  keys: string[];
  /** Distinct chunks a precompute job was enqueued for. */
  enqueued: string[];
  /** Distinct chunks already ready when the document was stored. */
  alreadyReady: string[];
  /** False when the document existed with exactly these chunks and metadata (nothing was rewritten). */
  changed: boolean;
}

export interface ChunkStatus {
  index: number;
  key: string;
  tokens: number;
  status: DocumentState;
  error?: string;
}

export interface DocumentStatus {
  id: string;
  status: DocumentState;
  progress: { ready: number; failed: number; total: number; fraction: number };
  chunks: ChunkStatus[];
  metadata: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

/** A document in a listing: its status without the per-chunk list (`chunks` is the count). */
export type DocumentSummary = Omit<DocumentStatus, 'chunks'> & { chunks: number };

/**
 * Restoring the document index from the manifests in the object store (`cacheblend rebuild`): after Redis
 * lost its data (restarted without persistence, a new instance, a key-layout change), every
 * `docs/<name>.json` becomes an index entry again, with references to its chunks; chunks whose objects
 * are stored become ready as soon as a precompute worker has checked them (nothing is recomputed), the
 * others are computed. Documents already indexed with the same chunks are left alone.
 */
import { errorMessage } from '../errors.js';
import type { ObjectStore } from '../storage/types.js';
import type { DocumentService } from './documents.js';
import { decodeManifest, nameOfManifestKey } from './manifest.js';

export interface RebuildSummary {
  manifests: number;
  restored: number;
  unchanged: number;
  /** Manifests that could not be read or parsed (named in `problems`). */
  damaged: number;
  /** Precompute jobs enqueued (distinct chunks per document not ready). */
  enqueued: number;
  problems: string[];
}

export async function rebuildIndex(
  docs: DocumentService,
  store: ObjectStore,
  onDocument: (name: string, outcome: 'restored' | 'unchanged' | 'damaged') => void = () => undefined,
): Promise<RebuildSummary> {
  const summary: RebuildSummary = {
    manifests: 0,
    restored: 0,
    unchanged: 0,
    damaged: 0,
    enqueued: 0,
    problems: [],
  };
  for await (const key of store.list('docs/')) {
    const name = nameOfManifestKey(key);
    if (name === null) continue;
    summary.manifests++;
    try {
      const buf = await store.get(key);
      if (buf === null) continue; // deleted meanwhile
      const r = await docs.restore(decodeManifest(buf));
      summary.enqueued += r.enqueued;
      summary[r.restored ? 'restored' : 'unchanged']++;
      onDocument(name, r.restored ? 'restored' : 'unchanged');
    } catch (err) {
      if ((err as { code?: string }).code === 'UNAVAILABLE') throw err; // Redis is gone: stop, rerun later
      summary.damaged++;
      summary.problems.push(`${key}: ${errorMessage(err)}`);
      onDocument(name, 'damaged');
    }
  }
  return summary;
}

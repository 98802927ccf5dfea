/**
 * Documents whose token ids belong to another model than the one serving: the service was started on the
 * same data with another MODEL. Their token ids (and the chunk caches computed from them) mean nothing to
 * this model, so they are never served to it (the retriever refuses them, KV_MISMATCH), and when the API
 * starts each is ingested again from its manifest — the same id, metadata and chunk texts, tokenized by
 * this model — which enqueues its chunks' precompute as a new ingest does. One document at a time, in the
 * background; the work is what ingesting the documents anew costs. The old model's chunk caches are
 * released as any replaced chunk is (collected when no document references them).
 */
import { errorMessage, TooLargeError } from '../errors.js';
import type { Logger } from '../ops/log.js';
import type { DocumentService, ModelIdentity } from './documents.js';
import { parseDocumentName } from './names.js';

export interface RetokenizeOptions {
  /** CHUNK_TOKEN_BUDGET. */
  budget: number;
  /** The cache salt of a tenant's chunk keys (names.ts cacheSalt under SHARE_CHUNK_CACHE). */
  salt(tenant: string): string;
  log: Logger;
}

export interface RetokenizeSummary {
  checked: number;
  retokenized: number;
  /** Documents of another model with no readable manifest: left as they are (refused when asked). */
  unreadable: number;
}

/** The documents of `names` whose chunks belong to another model than `fingerprint`. */
async function otherModels(docs: DocumentService, names: string[], fingerprint: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    const keys = await docs.chunkKeysOf(name);
    if (!keys || keys.length === 0) continue;
    const fps = await docs.fingerprintsOf([...new Set(keys)]);
    if ([...fps.values()].some((fp) => fp !== fingerprint)) out.push(name);
  }
  return out;
}

/** Ingest one document again under `model`, from its manifest; false when it has none. */
async function retokenize(
  docs: DocumentService,
  model: ModelIdentity,
  name: string,
  opts: RetokenizeOptions,
): Promise<boolean> {
  const manifest = await docs.manifest(name);
  if (!manifest) return false;
  const { tenant } = parseDocumentName(name);
  const texts = manifest.chunks.map((c) => c.text);
  const ingest = (input: { chunks?: string[]; text?: string }) =>
    docs.ingest({ id: manifest.id, metadata: manifest.metadata, ...input }, model, {
      budget: opts.budget,
      tenant,
      salt: opts.salt(tenant),
      requestId: 'retokenize',
    });
  // The chunks as they were cut; one this tokenizer makes longer than the budget: the text cut anew.
  await ingest({ chunks: texts }).catch((err: unknown) => {
    if (!(err instanceof TooLargeError)) throw err;
    return ingest({ text: texts.join('\n\n') });
  });
  return true;
}

export async function retokenizeDocuments(
  docs: DocumentService,
  model: ModelIdentity,
  opts: RetokenizeOptions,
): Promise<RetokenizeSummary> {
  const summary: RetokenizeSummary = { checked: 0, retokenized: 0, unreadable: 0 };
  for await (const names of docs.allNames()) {
    summary.checked += names.length;
    for (const name of await otherModels(docs, names, model.fingerprint)) {
      try {
        if (await retokenize(docs, model, name, opts)) summary.retokenized++;
        else summary.unreadable++;
      } catch (err) {
        summary.unreadable++;
        opts.log.warn('could not re-tokenize a document of another model', {
          document: name,
          error: errorMessage(err),
        });
      }
    }
  }
  if (summary.retokenized + summary.unreadable > 0) {
    opts.log.info('documents of another model re-tokenized for this one', { ...summary });
  }
  return summary;
}

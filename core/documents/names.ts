/**
 * Tenants and document names. Every document belongs to a tenant (the API key's, or DEFAULT_TENANT while
 * API_KEYS is unset); its name — the id the bookkeeping and the store use — is `<tenant>/<id>`, and just
 * `<id>` for DEFAULT_TENANT, so documents made before tenants existed keep their keys. Another tenant's
 * name never matches, so its documents are simply not found (404).
 */
import { DEFAULT_TENANT, TENANT_RE } from '../config/index.js';
import { InvalidArgumentError, invalidField } from '../errors.js';
import { DOCUMENT_ID_RE } from './manifest.js';

export interface DocumentRef {
  tenant: string;
  id: string;
}

export function documentName(tenant: string, id: string): string {
  if (!TENANT_RE.test(tenant)) throw new InvalidArgumentError(`invalid tenant ${JSON.stringify(tenant)}`);
  if (!DOCUMENT_ID_RE.test(id)) throw invalidField('id', `invalid document id ${JSON.stringify(id)}`);
  return tenant === DEFAULT_TENANT ? id : `${tenant}/${id}`;
}

export function parseDocumentName(name: string): DocumentRef {
  const slash = name.indexOf('/');
  const ref =
    slash < 0
      ? { tenant: DEFAULT_TENANT, id: name }
      : { tenant: name.slice(0, slash), id: name.slice(slash + 1) };
  documentName(ref.tenant, ref.id); // validates
  return ref;
}

/** A document's entry in the document list: `<tenant>/<id>` for every tenant, so each is one lexicographic range. */
export function listKey(tenant: string, id: string): string {
  documentName(tenant, id); // validates
  return `${tenant}/${id}`;
}

/** The document name a list key stands for; null for anything else. */
export function nameOfListKey(key: string): string | null {
  const slash = key.indexOf('/');
  if (slash < 0) return null;
  try {
    return documentName(key.slice(0, slash), key.slice(slash + 1));
  } catch {
    return null;
  }
}

/**
 * The salt a tenant's chunk identities carry (see chunkKey): none for DEFAULT_TENANT or when the operator
 * shares caches across tenants (SHARE_CHUNK_CACHE); otherwise the tenant, so that one tenant can neither
 * read nor time another's cached chunks (vLLM's `cache_salt` answers the same timing side channel).
 */
export function cacheSalt(tenant: string, shareAcrossTenants: boolean): string {
  return shareAcrossTenants || tenant === DEFAULT_TENANT ? '' : tenant;
}

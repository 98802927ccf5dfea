/**
 * Turns a model name or path into a local folder: an existing path as is; else `name` (or `org/name`) in the
 * search path; else its snapshot in the Hugging Face Hub cache (core/model/hub.ts: shared with Python tools,
 * so a model they downloaded is used as is); else, when allowed, a download from the Hub into that cache,
 * every file checked against the hash the Hub publishes for it.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelLoadError, NotFoundError, errorMessage } from '../errors.js';
import { exists } from '../util/fs.js';
import { cachedSnapshot, downloadSnapshot, hfHubCache, hubRepoFolder } from './hub.js';

export { hfHubCache, hubRepoFolder } from './hub.js';

/** Where to look; the service and CLI pass `config.modelSource` (core/config), which reads the environment. */
export interface ResolveOptions {
  /** Folders to look in; default none. */
  searchPath?: readonly string[];
  /** The Hugging Face Hub cache; default HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Whether a name found nowhere may be downloaded from the Hub; default false. */
  allowDownload?: boolean;
  /** Hub branch, tag or commit; default 'main' (or the `@rev` suffix of the name). */
  revision?: string;
  /** Hub base URL; default https://huggingface.co. */
  endpoint?: string;
  /** Hub access token for gated repos; default none. */
  token?: string;
  /** Injected for tests; default the global fetch. */
  fetch?: typeof fetch;
  /** Progress messages (downloads); default silent. */
  log?: (message: string) => void;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

/** `org/name` → `org--name`, the folder name looked for on the search path. */
export function repoFolderName(repo: string): string {
  return repo.replace('/', '--');
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Split `org/name@rev` into repo and revision. */
export function parseModelName(nameOrPath: string): { repo: string; revision?: string } | null {
  const at = nameOrPath.lastIndexOf('@');
  const repo = at > 0 ? nameOrPath.slice(0, at) : nameOrPath;
  const revision = at > 0 ? nameOrPath.slice(at + 1) : undefined;
  if (
    !NAME_RE.test(repo) ||
    repo.includes('..') ||
    (revision !== undefined && (!/^[\w./-]+$/.test(revision) || revision.split('/').includes('..')))
  ) {
    return null;
  }
  return { repo, revision };
}

async function onSearchPath(repo: string, searchPath: readonly string[], looked: string[]) {
  for (const dir of searchPath) {
    const candidates = [path.join(dir, repo)];
    if (repo.includes('/')) candidates.push(path.join(dir, repoFolderName(repo)));
    for (const c of candidates) {
      if (await isDir(c)) return path.resolve(c);
      looked.push(path.resolve(c));
    }
  }
  return null;
}

export async function resolveModelPath(nameOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  if (await exists(nameOrPath)) return path.resolve(nameOrPath);
  const looked: string[] = [path.resolve(nameOrPath)];
  const parsed = parseModelName(nameOrPath);
  if (!parsed) throw new NotFoundError(`model '${nameOrPath}' not found: no such path, and not a model name`);
  const { repo } = parsed;
  const revision = opts.revision ?? parsed.revision ?? 'main';
  if (revision.split('/').includes('..')) throw new NotFoundError(`model '${nameOrPath}': bad revision`);

  const found = await onSearchPath(repo, opts.searchPath ?? [], looked);
  if (found) return found;

  const cacheDir = path.resolve(opts.cacheDir ?? hfHubCache());
  const cached = await cachedSnapshot(cacheDir, repo, revision);
  if (cached) return cached;
  looked.push(`${path.join(cacheDir, hubRepoFolder(repo))} (Hugging Face cache, ${revision})`);

  const where = looked.join(', ');
  if (!(opts.allowDownload ?? false)) {
    throw new NotFoundError(
      `model '${nameOrPath}' not found; looked in: ${where}. Downloads are off (CACHEBLEND_ALLOW_DOWNLOAD=1 turns them on)`,
    );
  }
  try {
    return await downloadSnapshot(cacheDir, repo, revision, {
      endpoint: (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, ''),
      ...(opts.token !== undefined && { token: opts.token }),
      ...(opts.fetch && { fetch: opts.fetch }),
      ...(opts.log && { log: opts.log }),
    });
  } catch (err) {
    if (err instanceof ModelLoadError) throw err;
    const status = (err as { statusCode?: number }).statusCode;
    const hint = status === 401 || status === 403 ? ' (gated or private: set HF_TOKEN)' : '';
    throw new NotFoundError(
      `model '${nameOrPath}' not found; looked in: ${where}; Hub download failed: ${errorMessage(err)}${hint}`,
      { cause: err },
    );
  }
}

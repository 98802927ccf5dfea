/**
 * Turns a model name or path into a local folder: an existing path as is; else `name` (or `org/name`) in the
 * search path or the download cache; else, when allowed, a download from the Hugging Face Hub into the cache,
 * with every file checked against the hash the Hub publishes for it and written atomically.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ModelLoadError, NotFoundError, errorMessage } from '../errors.js';
import { exists } from '../util/fs.js';

/** Where to look; the service and CLI pass `config.modelSource` (core/config), which reads the environment. */
export interface ResolveOptions {
  /** Folders to look in; default none. */
  searchPath?: readonly string[];
  /** Where downloads go (`<cacheDir>/<org>--<name>`); default ~/.cache/cacheblend/models. */
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

/** Marker written last into a downloaded folder; a folder without it is an unfinished download. */
export const DOWNLOAD_MARKER = '.cacheblend-download.json';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

export function defaultCacheDir(): string {
  return path.join(os.homedir(), '.cache', 'cacheblend', 'models');
}

/** `org/name` → `org--name`, the folder name used in search paths and the cache. */
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
    (revision !== undefined && !/^[\w./-]+$/.test(revision))
  ) {
    return null;
  }
  return { repo, revision };
}

export async function resolveModelPath(nameOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  if (await exists(nameOrPath)) return path.resolve(nameOrPath);
  const looked: string[] = [path.resolve(nameOrPath)];
  const parsed = parseModelName(nameOrPath);
  if (!parsed) throw new NotFoundError(`model '${nameOrPath}' not found: no such path, and not a model name`);
  const { repo } = parsed;
  const revision = opts.revision ?? parsed.revision ?? 'main';

  for (const dir of opts.searchPath ?? []) {
    const candidates = [path.join(dir, repo)];
    if (repo.includes('/')) candidates.push(path.join(dir, repoFolderName(repo)));
    for (const c of candidates) {
      if (await isDir(c)) return path.resolve(c);
      looked.push(path.resolve(c));
    }
  }

  const cacheDir = path.resolve(opts.cacheDir ?? defaultCacheDir());
  const cached = path.join(cacheDir, repoFolderName(repo));
  if (await isCompleteDownload(cached, repo, revision)) return cached;
  looked.push(`${cached} (download cache)`);

  const allow = opts.allowDownload ?? false;
  const where = looked.join(', ');
  if (!allow) {
    throw new NotFoundError(
      `model '${nameOrPath}' not found; looked in: ${where}. Downloads are off (CACHEBLEND_ALLOW_DOWNLOAD=1 turns them on)`,
    );
  }
  try {
    await downloadFromHub(repo, revision, cached, opts);
  } catch (err) {
    if (err instanceof ModelLoadError) throw err;
    throw new NotFoundError(
      `model '${nameOrPath}' not found; looked in: ${where}; Hub download failed: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  return cached;
}

async function isCompleteDownload(dir: string, repo: string, revision: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await readFile(path.join(dir, DOWNLOAD_MARKER), 'utf8')) as Record<
      string,
      unknown
    >;
    return marker.repo === repo && (marker.revision === revision || marker.commit === revision);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Hub download

interface HubSibling {
  rfilename: string;
  size?: number;
  /** Git blob id (sha1 of "blob <size>\0" + content) of the file as stored in git. */
  blobId?: string;
  lfs?: { sha256: string; size: number };
}

interface HubModelInfo {
  sha?: string;
  siblings?: HubSibling[];
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Download the files the HF loader needs (config, tokenizer, safetensors weights) of `repo` at `revision`
 * into `target`. Hashes come from the Hub API (`siblings[].lfs.sha256` with `?blobs=true`; git blob ids for
 * small files); files are fetched by commit so they all belong to one snapshot.
 */
export async function downloadFromHub(
  repo: string,
  revision: string,
  target: string,
  opts: ResolveOptions = {},
): Promise<void> {
  const endpoint = (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token;
  const doFetch = opts.fetch ?? fetch;
  const log = opts.log ?? (() => undefined);
  const headers: Record<string, string> = { 'user-agent': 'cacheblend' };
  if (token) headers.authorization = `Bearer ${token}`;

  const get = async (url: string): Promise<Response> => {
    const res = await doFetch(url, { headers, redirect: 'follow' });
    if (!res.ok) {
      const hint = res.status === 401 || res.status === 403 ? ' (gated or private: set HF_TOKEN)' : '';
      throw new HttpError(res.status, `GET ${url}: HTTP ${res.status}${hint}`);
    }
    return res;
  };

  const infoUrl = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const info = (await (await get(infoUrl)).json()) as HubModelInfo;
  const commit = info.sha;
  const siblings = new Map((info.siblings ?? []).map((s) => [s.rfilename, s]));
  if (!commit || siblings.size === 0) throw new Error(`${infoUrl}: no commit or file list in the answer`);

  const wanted = ['config.json', 'tokenizer.json'];
  for (const f of wanted) {
    if (!siblings.has(f)) throw new ModelLoadError(`${repo}@${revision} has no ${f}`);
  }
  for (const f of ['tokenizer_config.json', 'generation_config.json']) if (siblings.has(f)) wanted.push(f);
  const index = 'model.safetensors.index.json';
  if (!siblings.has(index) && !siblings.has('model.safetensors')) {
    throw new ModelLoadError(
      `${repo}@${revision} has no model.safetensors or ${index} (other weight formats are not supported)`,
    );
  }

  await mkdir(target, { recursive: true });
  await rm(path.join(target, DOWNLOAD_MARKER), { force: true });
  const fetchFile = async (name: string) => {
    const sib = siblings.get(name);
    if (!sib) throw new ModelLoadError(`${repo}@${revision} lists no ${name}`);
    const dest = path.join(target, name);
    if (await verifyExisting(dest, sib)) return;
    log(`downloading ${repo}/${name}${sib.size ? ` (${sib.size} bytes)` : ''}`);
    const url = `${endpoint}/${repo}/resolve/${commit}/${name.split('/').map(encodeURIComponent).join('/')}`;
    await downloadVerified(await get(url), dest, sib, url);
  };
  for (const f of wanted) await fetchFile(f);
  if (siblings.has(index)) {
    await fetchFile(index);
    const idx = JSON.parse(await readFile(path.join(target, index), 'utf8')) as {
      weight_map?: Record<string, string>;
    };
    const shards = [...new Set(Object.values(idx.weight_map ?? {}))];
    if (shards.length === 0) throw new ModelLoadError(`${repo}/${index}: empty weight_map`);
    for (const s of shards) {
      if (s.includes('/') || s.startsWith('.'))
        throw new ModelLoadError(`${repo}/${index}: bad shard name ${s}`);
      await fetchFile(s);
    }
  } else {
    await fetchFile('model.safetensors');
  }
  await writeAtomic(
    path.join(target, DOWNLOAD_MARKER),
    JSON.stringify({ repo, revision, commit, endpoint, downloadedAt: new Date().toISOString() }, null, 2),
  );
}

/** The expected digest of a sibling: sha256 for LFS files, git blob sha1 otherwise. */
function expectedDigest(sib: HubSibling): { kind: 'sha256' | 'git-sha1'; hex: string; size?: number } | null {
  if (sib.lfs?.sha256) return { kind: 'sha256', hex: sib.lfs.sha256.toLowerCase(), size: sib.lfs.size };
  if (sib.blobId) return { kind: 'git-sha1', hex: sib.blobId.toLowerCase(), size: sib.size };
  return null;
}

function newHasher(kind: 'sha256' | 'git-sha1', size: number) {
  const h = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') h.update(`blob ${size}\0`);
  return h;
}

async function verifyExisting(file: string, sib: HubSibling): Promise<boolean> {
  const want = expectedDigest(sib);
  if (!want) return false;
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    return false;
  }
  if (want.size !== undefined && size !== want.size) return false;
  const h = newHasher(want.kind, size);
  const fh = await open(file, 'r');
  try {
    const buf = new Uint8Array(1 << 20);
    for (let pos = 0; ;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex') === want.hex;
}

/** Stream a response into `dest` through a temp file, checking size and digest before the rename. */
async function downloadVerified(res: Response, dest: string, sib: HubSibling, url: string): Promise<void> {
  const want = expectedDigest(sib);
  if (!want)
    throw new ModelLoadError(`${url}: the Hub gave no hash for ${sib.rfilename}; refusing to trust it`);
  const lengthHeader = Number(res.headers.get('content-length') ?? NaN);
  const size = want.size ?? (Number.isFinite(lengthHeader) ? lengthHeader : undefined);
  if (size === undefined) throw new ModelLoadError(`${url}: unknown size for ${sib.rfilename}`);
  if (!res.body) throw new ModelLoadError(`${url}: empty response`);
  const hasher = newHasher(want.kind, size);
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  let written = 0;
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      hasher.update(value);
      await fh.write(value);
      written += value.byteLength;
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  const digest = hasher.digest('hex');
  if (written !== size || digest !== want.hex) {
    await rm(tmp, { force: true });
    throw new ModelLoadError(
      `${url}: download does not match the Hub's ${want.kind} (got ${written} bytes, ${digest}; want ${size} bytes, ${want.hex})`,
    );
  }
  await rename(tmp, dest);
}

async function writeAtomic(dest: string, text: string): Promise<void> {
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, dest);
}

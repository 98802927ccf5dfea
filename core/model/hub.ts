/**
 * The Hugging Face Hub cache, shared with Python tools: `<cache>/models--<org>--<name>/` holds `blobs/`
 * (each file once, named by its hash), `snapshots/<commit>/` (the repo's files as links into blobs/) and
 * `refs/<branch>` (a branch's commit). A model `huggingface_hub` or `transformers` downloaded is found here
 * and used as is; downloads (`@huggingface/hub`'s downloadFileToCacheDir) land in the same layout, and
 * every file fetched is checked against the hash the Hub published for it, which names its blob.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { downloadFileToCacheDir, modelInfo } from '@huggingface/hub';
import { ModelLoadError } from '../errors.js';
import { exists } from '../util/fs.js';

export { hfHubCache } from '../util/fs.js';

const COMMIT_RE = /^[0-9a-f]{40}$/;

/** What the Hub needs to be asked: base URL, token, and a fetch (tests inject one). */
export interface HubAccess {
  endpoint: string;
  token?: string;
  fetch?: typeof fetch;
  log?: (message: string) => void;
}

/** `org/name` → `models--org--name`, the repo's folder in the Hub cache. */
export function hubRepoFolder(repo: string): string {
  return `models--${repo.split('/').join('--')}`;
}

/** The files the HF loader reads from a snapshot: config, tokenizer, and the weights (one file or shards). */
async function weightFiles(dir: string): Promise<string[] | null> {
  const index = 'model.safetensors.index.json';
  if (!(await exists(path.join(dir, index)))) return ['model.safetensors'];
  try {
    const idx = JSON.parse(await readFile(path.join(dir, index), 'utf8')) as {
      weight_map?: Record<string, string>;
    };
    return [index, ...new Set(Object.values(idx.weight_map ?? {}))];
  } catch {
    return null;
  }
}

/** Whether a snapshot folder holds every file a Hugging Face model load needs (links resolving). */
async function completeSnapshot(dir: string): Promise<boolean> {
  const weights = await weightFiles(dir);
  if (!weights) return false;
  for (const f of ['config.json', 'tokenizer.json', ...weights])
    if (!(await exists(path.join(dir, f)))) return false;
  return true;
}

/** The cached snapshot of `repo` at `revision` (a branch or tag through refs/, or a commit), if complete. */
export async function cachedSnapshot(
  cacheDir: string,
  repo: string,
  revision: string,
): Promise<string | null> {
  const storage = path.join(cacheDir, hubRepoFolder(repo));
  let commit: string | undefined = revision;
  if (!COMMIT_RE.test(revision)) {
    commit = (await readFile(path.join(storage, 'refs', revision), 'utf8').catch(() => undefined))?.trim();
  }
  if (!commit || !COMMIT_RE.test(commit)) return null;
  const dir = path.join(storage, 'snapshots', commit);
  return (await completeSnapshot(dir)) ? dir : null;
}

/** A blob's name is the Hub's hash of it: sha256 for LFS files, the git blob sha1 for the others. */
async function blobMatchesName(blob: string): Promise<boolean> {
  const want = path.basename(blob);
  const kind = /^[0-9a-f]{64}$/.test(want) ? 'sha256' : /^[0-9a-f]{40}$/.test(want) ? 'sha1' : null;
  if (!kind)
    throw new ModelLoadError(`${blob}: the Hub gave no sha256 or git hash for it; refusing to trust it`);
  const fh = await open(blob, 'r');
  try {
    const h = createHash(kind);
    if (kind === 'sha1') h.update(`blob ${(await fh.stat()).size}\0`);
    for await (const chunk of fh.createReadStream()) h.update(chunk as Buffer);
    return h.digest('hex') === want;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Download one file of `repo` at `commit` into the cache and check it; a file that does not match its
 * hash is removed (blob and link) and refused.
 */
async function fetchChecked(cacheDir: string, repo: string, commit: string, name: string, hub: HubAccess) {
  const pointer = await downloadFileToCacheDir({
    repo: { type: 'model', name: repo },
    path: name,
    revision: commit,
    cacheDir,
    hubUrl: hub.endpoint,
    ...(hub.token && { accessToken: hub.token }),
    ...(hub.fetch && { fetch: hub.fetch }),
  });
  const blob = await realpath(pointer);
  if (await blobMatchesName(blob)) return;
  await rm(blob, { force: true });
  await rm(pointer, { force: true });
  throw new ModelLoadError(
    `${repo}/${name}: download does not match the Hub's ${path.basename(blob).length === 64 ? 'sha256' : 'git hash'}`,
  );
}

/**
 * Download what the HF loader needs of `repo` at `revision` (config, tokenizer and generation settings,
 * safetensors weights) into the Hub cache, all from the commit the revision names now, and record the
 * branch's commit in refs/ as huggingface_hub does. Returns the snapshot folder.
 */
export async function downloadSnapshot(
  cacheDir: string,
  repo: string,
  revision: string,
  hub: HubAccess,
): Promise<string> {
  const info = await modelInfo({
    name: repo,
    revision,
    hubUrl: hub.endpoint,
    additionalFields: ['sha', 'filePaths'],
    ...(hub.token && { accessToken: hub.token }),
    ...(hub.fetch && { fetch: hub.fetch }),
  });
  const commit = info.sha;
  const files = new Set(info.filePaths ?? []);
  if (!commit || !COMMIT_RE.test(commit))
    throw new ModelLoadError(`${repo}@${revision}: the Hub named no commit`);
  for (const f of ['config.json', 'tokenizer.json']) {
    if (!files.has(f)) throw new ModelLoadError(`${repo}@${revision} has no ${f}`);
  }
  const index = 'model.safetensors.index.json';
  if (!files.has(index) && !files.has('model.safetensors')) {
    throw new ModelLoadError(
      `${repo}@${revision} has no model.safetensors or ${index} (other weight formats are not supported)`,
    );
  }
  const optional = ['tokenizer_config.json', 'generation_config.json'].filter((f) => files.has(f));
  const get = (name: string) => {
    hub.log?.(`downloading ${repo}/${name}`);
    return fetchChecked(cacheDir, repo, commit, name, hub);
  };
  for (const f of ['config.json', 'tokenizer.json', ...optional]) await get(f);
  const dir = path.join(cacheDir, hubRepoFolder(repo), 'snapshots', commit);
  if (files.has(index)) await get(index);
  const weights = await weightFiles(dir);
  if (!weights || (weights.length === 1 && files.has(index)))
    throw new ModelLoadError(`${repo}/${index}: empty weight_map`);
  for (const w of weights.filter((f) => f !== index)) {
    if (w.includes('/') || w.startsWith('.'))
      throw new ModelLoadError(`${repo}/${index}: bad shard name ${w}`);
    await get(w);
  }
  if (revision !== commit) await writeRef(cacheDir, repo, revision, commit);
  return dir;
}

async function writeRef(cacheDir: string, repo: string, revision: string, commit: string): Promise<void> {
  const ref = path.join(cacheDir, hubRepoFolder(repo), 'refs', revision);
  await mkdir(path.dirname(ref), { recursive: true });
  await writeFile(ref, commit);
}

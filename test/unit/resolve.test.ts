import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { ModelLoadError, NotFoundError } from '../../core/errors.js';
import { loadModel } from '../../core/model/load.js';
import { hfHubCache, parseModelName, resolveModelPath } from '../../core/model/resolve.js';
import { HF_FIXTURES_DIR } from '../helpers/hf-fixtures.js';

const ENDPOINT = 'https://hub.invalid';
const REPO = 'testorg/tiny-llama';
const COMMIT = 'c0ffee0000000000000000000000000000000000';

/** The Hub's hash of a file: sha256 for LFS (safetensors) files, the git blob sha1 for the others. */
function hubHash(name: string, buf: Buffer): { oid: string; lfs?: { oid: string; size: number } } {
  const oid = createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex');
  if (!name.endsWith('.safetensors')) return { oid };
  return { oid, lfs: { oid: createHash('sha256').update(buf).digest('hex'), size: buf.length } };
}

/**
 * A fake Hub serving one fixture folder the way @huggingface/hub asks for it: model info (commit and
 * file list), paths-info (hashes), and resolve URLs by commit (answering range probes with the size).
 */
async function fakeHub(fixture: string, tamper?: string) {
  const dir = path.join(HF_FIXTURES_DIR, fixture);
  const files = new Map<string, Buffer>();
  for (const f of await readdir(dir)) files.set(f, await readFile(path.join(dir, f)));
  const requests: string[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    requests.push(url);
    if (url.startsWith(`${ENDPOINT}/api/models/${REPO}/revision/main?`)) {
      const siblings = [...files.keys()].map((rfilename) => ({ rfilename }));
      return Response.json({ _id: 'x', id: REPO, sha: COMMIT, siblings });
    }
    if (url === `${ENDPOINT}/api/models/${REPO}/paths-info/${COMMIT}` && init?.method === 'POST') {
      const { paths } = JSON.parse(String(init.body)) as { paths: string[] };
      return Response.json(
        paths
          .filter((p) => files.has(p))
          .map((p) => ({ path: p, type: 'file', size: files.get(p)!.length, ...hubHash(p, files.get(p)!) })),
      );
    }
    const prefix = `${ENDPOINT}/${REPO}/resolve/${COMMIT}/`;
    if (url.startsWith(prefix)) {
      const name = decodeURIComponent(url.slice(prefix.length));
      let buf = files.get(name);
      if (!buf) return new Response('no', { status: 404, headers: { 'X-Error-Code': 'EntryNotFound' } });
      const etag = `"${hubHash(name, buf).lfs?.oid ?? hubHash(name, buf).oid}"`;
      if (name === tamper) {
        buf = Buffer.from(buf);
        buf[buf.length - 1] ^= 1;
      }
      const range = new Headers(init?.headers).get('range');
      const m = range && /^bytes=(\d+)-(\d+)$/.exec(range);
      if (m) {
        const part = buf.subarray(Number(m[1]), Number(m[2]) + 1);
        return new Response(new Uint8Array(part), {
          status: 206,
          headers: { 'content-range': `bytes ${m[1]}-${m[2]}/${buf.length}`, etag },
        });
      }
      return new Response(new Uint8Array(buf), { status: 200, headers: { etag } });
    }
    return new Response('not found', { status: 404 });
  }) as typeof fetch;
  return { fetchImpl, requests };
}

/**
 * A Hub cache as huggingface_hub leaves it after downloading a fixture: blobs named by hash, a snapshot of
 * relative links into them, refs/main naming the commit.
 */
async function pythonCache(cacheDir: string, repo: string, fixture: string): Promise<string> {
  const storage = path.join(cacheDir, `models--${repo.replace('/', '--')}`);
  const snapshot = path.join(storage, 'snapshots', COMMIT);
  await mkdir(path.join(storage, 'blobs'), { recursive: true });
  await mkdir(snapshot, { recursive: true });
  await mkdir(path.join(storage, 'refs'), { recursive: true });
  const dir = path.join(HF_FIXTURES_DIR, fixture);
  for (const f of await readdir(dir)) {
    const buf = await readFile(path.join(dir, f));
    const h = hubHash(f, buf);
    const blob = h.lfs?.oid ?? h.oid;
    await writeFile(path.join(storage, 'blobs', blob), buf);
    await symlink(path.join('..', '..', 'blobs', blob), path.join(snapshot, f));
  }
  await writeFile(path.join(storage, 'refs', 'main'), COMMIT);
  return snapshot;
}

describe('resolveModelPath', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'resolve-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('parses names', () => {
    expect(parseModelName('org/name@v1.0')).toEqual({ repo: 'org/name', revision: 'v1.0' });
    expect(parseModelName('stories260K')).toEqual({ repo: 'stories260K', revision: undefined });
    expect(parseModelName('../etc')).toBeNull();
    expect(parseModelName('a/b/c')).toBeNull();
  });

  it('uses an existing path as is', async () => {
    const p = path.join(HF_FIXTURES_DIR, 'mistral');
    expect(await resolveModelPath(p, { searchPath: [] })).toBe(p);
  });

  it('finds dir/name and dir/org--name on the search path', async () => {
    await mkdir(path.join(tmp, 'search', 'meta--tiny'), { recursive: true });
    await mkdir(path.join(tmp, 'search', 'plain'), { recursive: true });
    const searchPath = [path.join(tmp, 'missing'), path.join(tmp, 'search')];
    expect(await resolveModelPath('meta/tiny', { searchPath })).toBe(path.join(tmp, 'search', 'meta--tiny'));
    expect(await resolveModelPath('plain', { searchPath })).toBe(path.join(tmp, 'search', 'plain'));
  });

  it('finds names on the search path CACHEBLEND_MODEL_PATH configures', async () => {
    const config = loadConfig({ CACHEBLEND_MODEL_PATH: `${path.join(tmp, 'nope')}:${HF_FIXTURES_DIR}` });
    expect(await resolveModelPath('llama-tied', config.modelSource)).toBe(
      path.join(HF_FIXTURES_DIR, 'llama-tied'),
    );
    await expect(resolveModelPath('llama-tied')).rejects.toThrow(/not found/);
  });

  it('NotFoundError lists where it looked when downloads are off', async () => {
    const err = await resolveModelPath('someorg/absent', {
      searchPath: [path.join(tmp, 'search')],
      cacheDir: path.join(tmp, 'cache'),
      allowDownload: false,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    const msg = (err as Error).message;
    expect(msg).toContain(path.join(tmp, 'search', 'someorg--absent'));
    expect(msg).toContain(`${path.join(tmp, 'cache', 'models--someorg--absent')} (Hugging Face cache, main)`);
    expect(msg).toMatch(/Downloads are off/);
  });

  it('uses a model Python tools left in the Hugging Face cache, offline, by branch or commit', async () => {
    const cacheDir = path.join(tmp, 'py-cache');
    const snapshot = await pythonCache(cacheDir, 'pyorg/gqa', 'llama-gqa');
    const opts = { searchPath: [], cacheDir, allowDownload: false };
    expect(await resolveModelPath('pyorg/gqa', opts)).toBe(snapshot);
    expect(await resolveModelPath(`pyorg/gqa@${COMMIT}`, opts)).toBe(snapshot);
    const model = await loadModel('pyorg/gqa', opts);
    expect(model.fingerprint).toBe((await loadModel(path.join(HF_FIXTURES_DIR, 'llama-gqa'))).fingerprint);
    // Another branch, or a snapshot missing a shard (its link dangling), is not a model.
    await expect(resolveModelPath('pyorg/gqa@dev', opts)).rejects.toThrow(NotFoundError);
    const shard = path.join(snapshot, 'model-00003-of-00004.safetensors');
    await rm(path.resolve(snapshot, await readlink(shard)));
    await expect(resolveModelPath('pyorg/gqa', opts)).rejects.toThrow(NotFoundError);
  });

  it('finds the cache where huggingface_hub does: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub', async () => {
    expect(hfHubCache({ HF_HUB_CACHE: '/a/hub', HF_HOME: '/b' })).toBe('/a/hub');
    expect(hfHubCache({ HF_HOME: '/b' })).toBe('/b/hub');
    expect(hfHubCache({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    const home = path.join(tmp, 'hf-home');
    const snapshot = await pythonCache(path.join(home, 'hub'), 'pyorg/tied', 'llama-tied');
    const byHome = loadConfig({ HF_HOME: home, CACHEBLEND_MODEL_PATH: tmp });
    expect(byHome.modelSource.cacheDir).toBe(path.join(home, 'hub'));
    expect(await resolveModelPath('pyorg/tied', byHome.modelSource)).toBe(snapshot);
    const byCache = loadConfig({
      HF_HOME: '/nowhere',
      HF_HUB_CACHE: path.join(home, 'hub'),
      CACHEBLEND_MODEL_PATH: tmp,
    });
    expect(await resolveModelPath('pyorg/tied', byCache.modelSource)).toBe(snapshot);
  });

  it('downloads from the Hub into the Hugging Face cache with verified hashes, then serves it offline', async () => {
    const cacheDir = path.join(tmp, 'dl-cache');
    const hub = await fakeHub('llama-gqa');
    const opts = { searchPath: [], cacheDir, allowDownload: true, endpoint: ENDPOINT, fetch: hub.fetchImpl };
    const dir = await resolveModelPath(REPO, opts);
    const storage = path.join(cacheDir, 'models--testorg--tiny-llama');
    expect(dir).toBe(path.join(storage, 'snapshots', COMMIT));
    expect((await readdir(dir)).sort()).toEqual(
      [
        'config.json',
        'generation_config.json',
        'model-00001-of-00004.safetensors',
        'model-00002-of-00004.safetensors',
        'model-00003-of-00004.safetensors',
        'model-00004-of-00004.safetensors',
        'model.safetensors.index.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    );
    // The layout huggingface_hub reads: links into blobs named by hash, and the branch's commit.
    for (const f of await readdir(dir)) {
      expect((await lstat(path.join(dir, f))).isSymbolicLink()).toBe(true);
      expect(await readlink(path.join(dir, f))).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
    }
    expect(await readFile(path.join(storage, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    expect(hub.requests.every((u) => u.includes('/api/') || u.includes(`/resolve/${COMMIT}/`))).toBe(true);

    const offline = (async () => {
      throw new Error('offline');
    }) as typeof fetch;
    const model = await loadModel(REPO, { ...opts, fetch: offline });
    const local = await loadModel(path.join(HF_FIXTURES_DIR, 'llama-gqa'));
    expect(model.fingerprint).toBe(local.fingerprint);
  });

  it('refuses a download whose hash does not match, leaving no file behind', async () => {
    const cacheDir = path.join(tmp, 'bad-cache');
    const hub = await fakeHub('llama-tied', 'model.safetensors');
    const err = await resolveModelPath(REPO, {
      searchPath: [],
      cacheDir,
      allowDownload: true,
      endpoint: ENDPOINT,
      fetch: hub.fetchImpl,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/model.safetensors: download does not match the Hub's sha256/);
    const storage = path.join(cacheDir, 'models--testorg--tiny-llama');
    expect(await readdir(path.join(storage, 'snapshots', COMMIT))).not.toContain('model.safetensors');
    const blobs = await readdir(path.join(storage, 'blobs'));
    expect(blobs.some((b) => b.length === 64)).toBe(false); // the only LFS file was the bad one
    expect(blobs.some((b) => b.endsWith('.incomplete'))).toBe(false);
    await expect(readFile(path.join(storage, 'refs', 'main'))).rejects.toThrow();
  });

  it('offline: NotFoundError naming the places looked and the download failure', async () => {
    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const err = await resolveModelPath('someorg/absent', {
      searchPath: [],
      cacheDir: path.join(tmp, 'c2'),
      allowDownload: true,
      endpoint: ENDPOINT,
      fetch: offline,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/Hub download failed: fetch failed/);
  });

  it('a repo missing on the Hub is NotFoundError', async () => {
    const hub = await fakeHub('llama-tied');
    const err = await resolveModelPath('other/repo', {
      searchPath: [],
      cacheDir: path.join(tmp, 'c3'),
      allowDownload: true,
      endpoint: ENDPOINT,
      fetch: hub.fetchImpl,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/Hub download failed: .*status 404/);
  });
});

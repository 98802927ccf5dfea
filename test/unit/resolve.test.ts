import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config/index.js';
import { ModelLoadError, NotFoundError } from '../../core/errors.js';
import { loadModel } from '../../core/model/load.js';
import { DOWNLOAD_MARKER, parseModelName, resolveModelPath } from '../../core/model/resolve.js';
import { HF_FIXTURES_DIR } from '../helpers/hf-fixtures.js';

const ENDPOINT = 'https://hub.invalid';
const REPO = 'testorg/tiny-llama';
const COMMIT = 'c0ffee0000000000000000000000000000000000';

/** A fake Hub serving one fixture folder: the model-info API (with hashes) and resolve URLs by commit. */
async function fakeHub(fixture: string, tamper?: string) {
  const dir = path.join(HF_FIXTURES_DIR, fixture);
  const files = new Map<string, Buffer>();
  for (const f of await readdir(dir)) files.set(f, await readFile(path.join(dir, f)));
  const siblings = [...files].map(([name, buf]) =>
    name.endsWith('.safetensors')
      ? {
          rfilename: name,
          size: buf.length,
          lfs: { sha256: createHash('sha256').update(buf).digest('hex'), size: buf.length },
        }
      : {
          rfilename: name,
          size: buf.length,
          blobId: createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex'),
        },
  );
  const requests: string[] = [];
  const fetchImpl = (async (input: string | URL | Request) => {
    const url = String(input);
    requests.push(url);
    if (url === `${ENDPOINT}/api/models/${REPO}/revision/main?blobs=true`) {
      return new Response(JSON.stringify({ sha: COMMIT, siblings }), { status: 200 });
    }
    const prefix = `${ENDPOINT}/${REPO}/resolve/${COMMIT}/`;
    if (url.startsWith(prefix)) {
      const name = decodeURIComponent(url.slice(prefix.length));
      let buf = files.get(name);
      if (!buf) return new Response('no', { status: 404 });
      if (name === tamper) {
        buf = Buffer.from(buf);
        buf[buf.length - 1] ^= 1;
      }
      return new Response(new Uint8Array(buf), {
        status: 200,
        headers: { 'content-length': String(buf.length) },
      });
    }
    return new Response('not found', { status: 404 });
  }) as typeof fetch;
  return { fetchImpl, requests };
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
    expect(msg).toContain(path.join(tmp, 'cache', 'someorg--absent'));
    expect(msg).toMatch(/Downloads are off/);
  });

  it('downloads from the Hub with verified hashes, then serves from the cache', async () => {
    const cacheDir = path.join(tmp, 'dl-cache');
    const hub = await fakeHub('llama-gqa');
    const opts = { searchPath: [], cacheDir, allowDownload: true, endpoint: ENDPOINT, fetch: hub.fetchImpl };
    const dir = await resolveModelPath(REPO, opts);
    expect(dir).toBe(path.join(cacheDir, 'testorg--tiny-llama'));
    const files = (await readdir(dir)).sort();
    expect(files).toEqual(
      [
        DOWNLOAD_MARKER,
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
    expect(hub.requests.every((u) => u.includes('/api/') || u.includes(`/resolve/${COMMIT}/`))).toBe(true);
    const marker = JSON.parse(await readFile(path.join(dir, DOWNLOAD_MARKER), 'utf8'));
    expect(marker).toMatchObject({ repo: REPO, revision: 'main', commit: COMMIT });

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
    expect((err as Error).message).toMatch(/does not match the Hub's sha256/);
    const left = await readdir(path.join(cacheDir, 'testorg--tiny-llama'));
    expect(left).not.toContain('model.safetensors');
    expect(left).not.toContain(DOWNLOAD_MARKER);
    expect(left.some((f) => f.endsWith('.tmp'))).toBe(false);
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
    expect((err as Error).message).toMatch(/HTTP 404/);
  });
});

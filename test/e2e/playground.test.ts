/**
 * The pages for people, in a real headless browser (Debian's chromium driven by puppeteer-core) against
 * the whole service on a real redis-server and stories260K: the playground lists a document ingested
 * through the API, ingests a pasted and an uploaded one under readable names, asks over the documents
 * ticked, answers one question in full, reuse and blend mode as the API does, and highlights
 * exactly the context tokens each mode recomputed; /docs renders the OpenAPI document; /jobs shows both
 * queues, and with API_KEYS only to an operator key.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiServer } from '../../api/server.js';
import { STORY_SETS } from '../helpers/models.js';
import { startRedis, type RedisHandle } from '../helpers/services.js';
import { startStack, type Stack } from '../helpers/stack.js';

/** The system's chromium (CHROMIUM_PATH, else `chromium` on PATH); missing, the tier fails saying how to get it. */
function chromiumPath(): string {
  const given = process.env.CHROMIUM_PATH;
  if (given && existsSync(given)) return given;
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch {
      // try the next name
    }
  }
  throw new Error(
    'no chromium found: the browser tests need one (apt-get install -y chromium, or set CHROMIUM_PATH)',
  );
}

const PASTED = STORY_SETS[0].chunks.join('\n\n');
const UPLOADED = STORY_SETS[1].chunks.join('\n\n');
const API_DOC = STORY_SETS[2].chunks.join('\n\n');
const QUESTION = 'Lily threw the ball and the dog';
const MAX_TOKENS = 12;
const MODES = ['full', 'reuse', 'blend'] as const;

let redis: RedisHandle;
let stack: Stack;
let browser: Browser;
let page: Page;
let dir: string;

beforeAll(async () => {
  const executablePath = chromiumPath();
  redis = await startRedis();
  stack = await startStack({ redis, label: 'playground', env: { CHUNK_TOKEN_BUDGET: '48' } });
  browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  dir = mkdtempSync(join(tmpdir(), 'playground-'));
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Card {
  answer: string;
  ttft: string;
  recomputed: string;
  hits: string;
  marked: number;
  tokens: number;
  context: string;
}

async function readCard(mode: string): Promise<Card> {
  return page.$eval(`#mode-${mode}`, (el) => ({
    answer: el.querySelector('.answer')!.textContent!,
    ttft: el.querySelector('dd.TTFT')!.textContent!,
    recomputed: el.querySelector('dd.recomputed')!.textContent!,
    hits: el.querySelector('dd.cache-hits')!.textContent!,
    marked: el.querySelectorAll('.context mark').length,
    tokens: [...el.querySelectorAll('.context .chunk')].reduce((a, c) => a + c.childNodes.length, 0),
    context: el.querySelector('.context')!.textContent!,
  }));
}

describe('playground', () => {
  it('lists API-ingested documents, ingests with readable names, and asks over the ticked ones', async () => {
    // A document ingested through the API before the page opens: listed, and asked over.
    const viaApi = await stack.request('POST', '/v1/documents', {
      body: { id: 'api-story', text: API_DOC },
    });
    expect(viaApi.status).toBe(202);
    await stack.ready('api-story');
    await page.goto(`${stack.api.url}/`);
    expect(await page.title()).toBe('cacheblend playground');
    await page.waitForSelector('li.doc[data-id="api-story"]');

    await page.type('#text', PASTED);
    const file = join(dir, 'uploaded.txt');
    writeFileSync(file, UPLOADED);
    const input = await page.$('#files');
    await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(file);
    await page.click('#ingest');
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('li.doc')].filter((li) => li.getAttribute('data-status') === 'ready')
          .length === 3,
      { timeout: 60_000 },
    );
    const listed = await page.$$eval('li.doc', (lis) =>
      lis.map((li) => ({ id: li.getAttribute('data-id')!, name: li.querySelector('.name')!.textContent! })),
    );
    const names = listed.map((d) => d.name).sort();
    expect(names).toEqual(
      ['api-story', 'uploaded.txt', `${PASTED.trim().split(/\s+/).slice(0, 6).join(' ')} …`].sort(),
    );
    // Untick the uploaded document: the question goes over the API's document and the pasted one.
    const uploaded = listed.find((d) => d.name === 'uploaded.txt')!.id;
    await page.click(`li.doc[data-id="${uploaded}"] input.pick`);
    const ids = listed.map((d) => d.id).filter((id) => id !== uploaded);

    await page.type('#question', QUESTION);
    await page.$eval('#maxTokens', (el) => ((el as HTMLInputElement).value = '12'));
    await page.click('#ask');
    await page.waitForSelector('#mode-blend', { timeout: 90_000 });
    if (process.env.PLAYGROUND_SCREENSHOT)
      await page.screenshot({ path: process.env.PLAYGROUND_SCREENSHOT, fullPage: true });

    for (const mode of MODES) {
      const card = await readCard(mode);
      // The independent reference: the same query straight to the API.
      const r = await stack.request('POST', '/v1/query', {
        body: { question: QUESTION, documents: ids, mode, maxTokens: MAX_TOKENS, explain: true },
      });
      expect(r.status).toBe(200);
      const body = r.body as { answer: string; recomputedTokens: number; contextTokens: number };
      expect(card.answer, mode).toBe(body.answer);
      expect(card.answer.length, mode).toBeGreaterThan(0);
      expect(card.ttft, mode).toMatch(/^\d+\.\d ms$/);
      expect(card.recomputed).toBe(`${body.recomputedTokens} of ${body.contextTokens} context tokens`);
      expect(card.tokens, mode).toBe(body.contextTokens);
      expect(card.marked, mode).toBe(body.recomputedTokens);
      expect(card.context, mode).toContain(STORY_SETS[0].chunks[0].trim().split(' ').slice(0, 4).join(' '));
      expect(card.context, mode).toContain(STORY_SETS[2].chunks[0].trim().split(' ').slice(0, 4).join(' '));
      expect(card.context, mode).not.toContain(
        STORY_SETS[1].chunks[0].trim().split(' ').slice(0, 6).join(' '),
      );
      if (mode === 'full') expect(card.marked).toBe(card.tokens);
      if (mode === 'reuse') expect(card.marked).toBe(0);
      if (mode === 'blend') {
        expect(card.marked).toBeGreaterThan(0);
        expect(card.marked).toBeLessThan(card.tokens);
      }
      if (mode === 'full') expect(card.hits).toBe('none');
      else expect(card.hits).toMatch(/^(lru|disk|store) \d+/);
    }
  });

  it('says why blend is no faster here, links the benchmark table, and has an icon', async () => {
    await page.goto(`${stack.api.url}/`);
    const why = await page.$eval('#why-slower', (el) => el.textContent!.replace(/\s+/g, ' '));
    expect(why).toContain('Why is blend no faster than full here?');
    expect(why).toContain('launching onnxruntime runs');
    const href = await page.$eval('#why-slower a', (a) => (a as HTMLAnchorElement).href);
    const table = await fetch(href);
    expect(table.status).toBe(200);
    expect(await table.text()).toContain('## TTFT (`npm run bench:ttft`)');
    const icon = await fetch(`${stack.api.url}/favicon.ico`);
    expect(icon.status).toBe(200);
    expect(icon.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
  });

  it('shows what is wrong in the page: nothing to ingest, or the API refusing the question', async () => {
    await page.goto(`${stack.api.url}/`);
    await page.click('#ingest');
    const status = () => page.$eval('#status', (el) => [el.textContent, el.className]);
    expect(await status()).toEqual(['paste a text or choose files first', 'error']);
    await page.$eval('#question', (el) => ((el as HTMLInputElement).value = 'x'.repeat(100_001)));
    await page.click('#ask');
    await page.waitForFunction(() => document.querySelector('#status')!.className === 'error');
    expect(await status()).toEqual([
      'PAYLOAD_TOO_LARGE: question: longer than the limit of 100000 characters',
      'error',
    ]);
    expect(await page.$$('#results .mode')).toHaveLength(0);
  });
});

describe('API docs and jobs view', () => {
  it('/docs renders the OpenAPI document with every route', async () => {
    await page.goto(`${stack.api.url}/docs/`);
    await page.waitForSelector('.opblock', { timeout: 30_000 });
    const paths = await page.$$eval('.opblock-summary-path', (els) =>
      els.map((e) => e.getAttribute('data-path')),
    );
    expect(paths).toContain('/v1/query');
    expect(paths).toContain('/v1/documents/{id}');
  });

  it('/jobs shows both queues', async () => {
    await page.goto(`${stack.api.url}/jobs`);
    await page.waitForFunction(
      () => document.body.innerText.includes('precompute') && document.body.innerText.includes('blend'),
      { timeout: 30_000 },
    );
  });

  it('/jobs needs an operator key when API_KEYS is set', async () => {
    const apiKeys = [
      { tenant: 'default', key: 'operator-key' },
      { tenant: 'acme', key: 'acme-key' },
    ];
    const api: ApiServer = await startApi({ config: { ...stack.config, apiKeys }, port: 0 });
    try {
      const basic = (key: string) => ({
        Authorization: `Basic ${Buffer.from(`any:${key}`).toString('base64')}`,
      });
      const none = await fetch(`${api.url}/jobs`);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
      expect((await none.json()).error.code).toBe('UNAUTHENTICATED');
      const tenant = await fetch(`${api.url}/jobs`, { headers: basic('acme-key') });
      expect(tenant.status).toBe(403);
      expect((await fetch(`${api.url}/jobs`, { headers: basic('wrong') })).status).toBe(401);
      expect((await fetch(`${api.url}/jobs`, { headers: basic('operator-key') })).status).toBe(200);
      const bearer = await fetch(`${api.url}/jobs`, { headers: { Authorization: 'Bearer operator-key' } });
      expect(bearer.status).toBe(200);
      // The playground and the docs are public pages: what they call is authenticated, not the pages.
      expect((await fetch(`${api.url}/`)).status).toBe(200);
      expect((await fetch(`${api.url}/v1/documents`)).status).toBe(401);
    } finally {
      await api.close();
    }
  });
});

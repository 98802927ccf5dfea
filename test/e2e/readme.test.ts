/**
 * The README's API examples stay true: every `<!-- example -->` command is replayed, in order, against a
 * service on the default settings, and its reply must be the documented one (fields that change from run
 * to run — ids, times, cache tiers — only keep their type). Refresh them with test/helpers/record-readme.ts.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExamples, replyDifferences, runExamples, type ExampleRun } from '../helpers/readme-examples.js';
import { startReadmeStack } from '../helpers/readme-stack.js';

let stack: Awaited<ReturnType<typeof startReadmeStack>>;
let runs: ExampleRun[];

beforeAll(async () => {
  const markdown = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const examples = parseExamples(markdown);
  expect(examples.length).toBeGreaterThanOrEqual(12);
  stack = await startReadmeStack();
  runs = await runExamples(stack.url, examples);
});

afterAll(async () => stack?.close());

describe('README examples', () => {
  it('cover every route of the OpenAPI document', async () => {
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    // The HTML pages (playground, /docs, /jobs) are exercised in a browser by playground.test.ts.
    const isPage = (op: unknown) =>
      (op as { responses?: Record<string, { description?: string }> }).responses?.['200']?.description ===
      'HTML page';
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => !isPage(op))
        .map(([m]) => `${m.toUpperCase()} ${p.replace(/\{[^}]+\}/g, '*')}`),
    );
    const shown = new Set(
      runs.map(
        (r) =>
          `${r.example.method} ${r.example.path.split('?')[0].replace(/\/v1\/(documents|jobs)\/[^/]+$/, '/v1/$1/*')}`,
      ),
    );
    expect(documented.filter((route) => !shown.has(route))).toEqual([]);
  });

  it('reply as documented', () => {
    const problems = runs.flatMap((r) => {
      const where = `${r.example.name} (${r.example.method} ${r.example.path})`;
      if (r.status !== r.example.status)
        return [`${where}: status ${r.status}, documented ${r.example.status}`];
      if (r.example.reply === null) return [];
      return replyDifferences(r.example.reply, r.reply).map((d) => `${where}: ${d}`);
    });
    expect(problems).toEqual([]);
  });
});

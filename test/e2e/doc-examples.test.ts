/**
 * The documented examples stay true: every `<!-- example -->` command of the README and of the docs that
 * show replies is replayed, in order, against a fresh service per group (test/helpers/doc-examples.ts),
 * and its reply must be the documented one (fields that change from run to run — ids, times, cache tiers
 * — only keep their type). Refresh them with test/helpers/record-examples.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXAMPLE_GROUPS,
  groupExamples,
  startExampleStack,
  type ExampleGroup,
} from '../helpers/doc-examples.js';
import { replyDifferences, runExamples, streamSummary, type ExampleRun } from '../helpers/readme-examples.js';

/** The examples a group has at least: a file that loses its examples by a formatting slip fails here. */
const AT_LEAST: Record<string, number> = { README: 3, 'API reference': 15, retrieval: 6, walkthrough: 6 };

function problems(runs: ExampleRun[]): string[] {
  return runs.flatMap((r) => {
    const where = `${r.example.name} (${r.example.method} ${r.example.path})`;
    if (r.status !== r.example.status)
      return [`${where}: status ${r.status}, documented ${r.example.status}`];
    if (r.example.reply === null) return [];
    const [documented, actual] = r.example.sse
      ? [streamSummary(r.example.reply as unknown[]), streamSummary(r.reply as unknown[])]
      : [r.example.reply, r.reply];
    return replyDifferences(documented, actual).map((d) => `${where}: ${d}`);
  });
}

function replayed(group: ExampleGroup): () => { url: string; runs: ExampleRun[] } {
  let stack: Awaited<ReturnType<typeof startExampleStack>> | undefined;
  let runs: ExampleRun[] = [];
  beforeAll(async () => {
    const examples = await groupExamples(group);
    expect(examples.length).toBeGreaterThanOrEqual(AT_LEAST[group.name]);
    stack = await startExampleStack(group);
    runs = await runExamples(stack.url, examples);
  });
  afterAll(async () => stack?.close());
  return () => ({ url: stack!.url, runs });
}

/** Routes of the OpenAPI document that no example of `runs` calls. */
async function routesNotShown(url: string, runs: ExampleRun[]): Promise<string[]> {
  const doc = (await (await fetch(`${url}/openapi.json`)).json()) as {
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
  return documented.filter((route) => !shown.has(route));
}

for (const group of EXAMPLE_GROUPS) {
  describe(`${group.name} examples (${group.files.join(', ')})`, () => {
    const replay = replayed(group);
    it('reply as documented', () => {
      expect(problems(replay().runs)).toEqual([]);
    });
    if (group.name === 'API reference') {
      it('show every route of the OpenAPI document', async () => {
        const { url, runs } = replay();
        expect(await routesNotShown(url, runs)).toEqual([]);
      });
    }
  });
}

/**
 * Which documents show example replies, and the service each group of them runs against: everything
 * `npm start` runs, with a Redis of its own. A group's files are replayed in order on one fresh service,
 * so a later example sees what an earlier one stored.
 */
import { readFile } from 'node:fs/promises';
import { parseExamples, type ReadmeExample } from './readme-examples.js';
import { startStack } from './stack.js';
import { startRedis } from './services.js';

export interface ExampleGroup {
  name: string;
  /** Paths from the repository root. */
  files: string[];
  /** Settings of the service, beyond the defaults. */
  env: Record<string, string>;
}

export const EXAMPLE_GROUPS: readonly ExampleGroup[] = [
  { name: 'README', files: ['README.md'], env: { CHUNK_TOKEN_BUDGET: '256' } },
  { name: 'API reference', files: ['docs/api.md'], env: { CHUNK_TOKEN_BUDGET: '256' } },
  { name: 'retrieval', files: ['docs/api-retrieval.md'], env: { CHUNK_TOKEN_BUDGET: '24' } },
  {
    name: 'walkthrough',
    files: ['docs/walkthrough.md'],
    env: { MODEL: 'cbqa-3M', CHUNK_TOKEN_BUDGET: '256' },
  },
];

const ROOT = new URL('../../', import.meta.url);

export function readDoc(file: string): Promise<string> {
  return readFile(new URL(file, ROOT), 'utf8');
}

/** A group's examples in replay order, each tagged with the file it comes from. */
export async function groupExamples(group: ExampleGroup): Promise<(ReadmeExample & { file: string })[]> {
  const perFile = await Promise.all(
    group.files.map(async (file) => parseExamples(await readDoc(file)).map((e) => ({ ...e, file }))),
  );
  return perFile.flat();
}

export async function startExampleStack(
  group: ExampleGroup,
): Promise<{ url: string; close(): Promise<void> }> {
  const redis = await startRedis();
  const stack = await startStack({ redis, label: `examples-${group.name}`, env: group.env });
  return {
    url: stack.api.url,
    async close() {
      await stack.close();
      await redis.stop();
    },
  };
}

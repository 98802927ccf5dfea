/**
 * Refresh the README's example replies: `npx tsx test/helpers/record-readme.ts` runs every example against
 * a fresh service (the stack test/e2e/readme.test.ts uses) and writes the replies it got into README.md.
 * Run prettier on README.md afterwards.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseExamples, runExamples, withRecordedReplies } from './readme-examples.js';
import { startReadmeStack } from './readme-stack.js';

const file = new URL('../../README.md', import.meta.url);
const markdown = await readFile(file, 'utf8');
const stack = await startReadmeStack();
try {
  const runs = await runExamples(stack.url, parseExamples(markdown));
  await writeFile(file, withRecordedReplies(markdown, runs));
  console.log(`recorded ${runs.length} example replies`);
} finally {
  await stack.close();
}

/**
 * Refresh the documented example replies: `npx tsx test/helpers/record-examples.ts [group name…]` runs every
 * example of each group (all groups by default) against a fresh service — the one
 * test/e2e/doc-examples.test.ts uses — and writes the replies it got into the files. Run prettier on them
 * afterwards.
 */
import { writeFile } from 'node:fs/promises';
import { EXAMPLE_GROUPS, groupExamples, readDoc, startExampleStack } from './doc-examples.js';
import { runExamples, withRecordedReplies } from './readme-examples.js';

const wanted = process.argv.slice(2);
for (const group of EXAMPLE_GROUPS.filter((g) => wanted.length === 0 || wanted.includes(g.name))) {
  const stack = await startExampleStack(group);
  try {
    const examples = await groupExamples(group);
    const runs = await runExamples(stack.url, examples);
    for (const file of group.files) {
      const mine = runs.filter((_, i) => examples[i].file === file);
      await writeFile(
        new URL(`../../${file}`, import.meta.url),
        withRecordedReplies(await readDoc(file), mine),
      );
      console.log(`${file}: recorded ${mine.length} example replies`);
    }
  } finally {
    await stack.close();
  }
}

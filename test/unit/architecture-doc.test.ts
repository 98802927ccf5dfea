/**
 * docs/architecture.md opens with the two flows (a query, a document) naming the files they pass through:
 * every file it names exists, so the picture cannot silently go stale when code moves.
 */
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const doc = readFileSync(path.join(root, 'docs/architecture.md'), 'utf8');
const flow = doc.slice(doc.indexOf('## The flow, in one screen'), doc.indexOf('## Correctness'));
const tracked = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n');

describe('docs/architecture.md flow picture', () => {
  const named = [...new Set(flow.match(/[\w./-]+\.(?:ts|lua)\b/g) ?? [])];

  it('names the files of both flows', () => {
    expect(flow).toContain('A query');
    expect(flow).toContain('A document');
    expect(named.length).toBeGreaterThan(20);
  });

  it.each(named)('%s exists', (name) => {
    // A path with a folder is from the root, or under core/documents for its Lua scripts; a bare name
    // continues the folder of the line before it, so it must be a tracked file of that name somewhere.
    const found = name.includes('/')
      ? existsSync(path.join(root, name)) || tracked.some((f) => f.endsWith(`/${name}`))
      : tracked.some((f) => path.basename(f) === name);
    expect(found, `${name} is named in the flow picture but is not in the tree`).toBe(true);
  });
});

/**
 * What a newcomer meets before the service answers: the compile that precedes the first `npm run demo` or
 * `npm start` says that it is compiling (else ~10-20 s pass in silence), and the comment in .npmrc sends
 * CUDA users to a section that exists. The compile runs in a copy of the sources and of dist/ (an
 * incremental compile of one changed file), never in this checkout's dist/, which other tests run from.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const COPIED = ['bin', 'core', 'cli', 'api', 'worker', 'precompute', 'bench', 'dist'];
const FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'cacheblend-first-run-'));
  const skip = (src: string) => !src.includes(`${path.sep}results`);
  for (const d of COPIED) await cp(path.join(ROOT, d), path.join(dir, d), { recursive: true, filter: skip });
  for (const f of FILES) await cp(path.join(ROOT, f), path.join(dir, f));
  await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a first run', () => {
  it('says it is compiling when sources are newer than dist/, and is silent when they are not', async () => {
    const later = new Date(Date.now() + 5_000);
    await utimes(path.join(dir, 'core/util/time.ts'), later, later);
    const run = () => promisify(execFile)(process.execPath, ['bin/build.js'], { cwd: dir });
    const first = await run();
    expect(first.stderr).toContain('build: compiling dist/ with tsc (the first time takes 10-20 s) ...');
    const again = await run();
    expect(again.stderr).toBe('');
  }, 120_000);

  it('.npmrc names a documentation section that exists', async () => {
    const npmrc = await readFile(path.join(ROOT, '.npmrc'), 'utf8');
    const ref = /see (\S+\.md) \("([^"]+)"\)/.exec(npmrc.replace(/\n# /g, ' '));
    expect(ref, npmrc).not.toBeNull();
    const doc = await readFile(path.join(ROOT, ref![1]), 'utf8');
    expect(doc.split('\n')).toContain(`## ${ref![2]}`);
  });
});

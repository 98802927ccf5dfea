#!/usr/bin/env node
// `npm run build`: compile dist/ (tsc, incremental), copy the Lua scripts and the playground files, but
// newer than the last build: every entry script runs this first, and a compile with nothing to do still
// costs seconds. `--force` compiles anyway.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const STAMP = path.join(root, 'dist', '.build-stamp');
const SOURCE_DIRS = ['core', 'cli', 'api', 'worker', 'precompute', 'bench'];
const SOURCE_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];

/** The newest modification time under the sources; folders count too, so a deleted file is a change. */
function newestSource() {
  let newest = 0;
  const visit = (p) => {
    let info;
    try {
      info = statSync(p);
    } catch {
      return; // absent: nothing to compare (a deployed image carries no sources)
    }
    if (info.isDirectory()) {
      if (path.basename(p) === 'results') return; // bench/results: outputs, not sources
      newest = Math.max(newest, info.mtimeMs);
      for (const name of readdirSync(p)) visit(path.join(p, name));
    } else if (/\.(ts|js|lua|json|html|css)$/.test(p)) newest = Math.max(newest, info.mtimeMs);
  };
  for (const p of [...SOURCE_DIRS, ...SOURCE_FILES]) visit(path.join(root, p));
  return newest;
}

function compiler() {
  try {
    return createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    return null; // a production install (npm ci --omit=dev): dist/ is what there is
  }
}

/** Whether dist/ is missing, or older than a source while a compiler is at hand. */
export function buildIsStale() {
  if (!existsSync(path.join(root, 'dist', 'cli', 'main.js'))) return true;
  if (compiler() === null) return false;
  return !existsSync(STAMP) || newestSource() > statSync(STAMP).mtimeMs;
}

export function build() {
  const tsc = compiler();
  if (tsc === null) throw new Error('typescript is not installed: run npm ci');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  cpSync(path.join(root, 'core/documents/lua'), path.join(root, 'dist/core/documents/lua'), {
    recursive: true,
  });
  cpSync(path.join(root, 'api/public'), path.join(root, 'dist/api/public'), { recursive: true });
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    if (process.argv.includes('--force') || buildIsStale()) {
      // The first compile takes 10-20 s with nothing else to show: say what is happening.
      process.stderr.write('build: compiling dist/ with tsc (the first time takes 10-20 s) ...\n');
      build();
    }
  } catch (err) {
    if (!(err && typeof err === 'object' && 'status' in err)) console.error(`build: ${err.message}`);
    process.exit(1); // tsc has printed its errors
  }
}

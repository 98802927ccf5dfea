#!/usr/bin/env node
// The `cacheblend` command: runs the compiled CLI, building dist/ first when it is missing (npm ci does
// not build: the project's .npmrc keeps install scripts off).
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(`${root}dist/cli/main.js`)) {
  process.stderr.write('cacheblend: building dist/ (first run) ...\n');
  execSync('npm run --silent build', { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}
const { main } = await import('../dist/cli/main.js');
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`cacheblend: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);

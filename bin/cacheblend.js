#!/usr/bin/env node
// The `cacheblend` command: runs the compiled CLI, compiling dist/ first when a source is newer than it
// (npm ci does not build: the project's .npmrc keeps install scripts off).
import { build, buildIsStale } from './build.js';

if (buildIsStale()) {
  process.stderr.write(
    'cacheblend: compiling dist/ with tsc (sources changed; the first time takes 10-20 s) ...\n',
  );
  try {
    build();
  } catch (err) {
    // tsc prints its own errors; anything else (no compiler) is said here.
    if (!(err && typeof err === 'object' && 'status' in err)) console.error(`cacheblend: ${err.message}`);
    process.exit(1);
  }
}
const { main } = await import('../dist/cli/main.js');
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`cacheblend: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);

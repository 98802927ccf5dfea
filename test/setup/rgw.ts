/**
 * Vitest global setup: a real S3 server, radosgw (Ceph's S3 gateway on a one-node Ceph), for the tests
 * that run against it as well as s3rver (test/helpers/rgw.ts).
 *
 * - CACHEBLEND_TEST_RGW=DIR: use the radosgw `infra/start-rgw.sh DIR` started (`.ci/run` does this);
 * - else, when `radosgw` is installed: start one under a temporary directory, in the background (tests
 *   that need it wait for it; the others do not), and stop it after the run;
 * - CACHEBLEND_TEST_RGW=off, or radosgw not installed: the radosgw tests are skipped, and the run says so
 *   loudly at its start and end. Under CI=true that is an error instead: CI must run them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

const INFRA = fileURLToPath(new URL('../../infra/', import.meta.url));

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where the radosgw of this run is (DIR of infra/start-rgw.sh), or null when it is skipped. */
    rgwDir: string | null;
    /** Why the radosgw tests are skipped (when rgwDir is null). */
    rgwSkipped: string;
  }
}

function installed(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

function banner(message: string): void {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!!! ${message}\n${line}\n\n`);
}

export default function setup(project: TestProject): (() => Promise<void>) | undefined {
  const given = process.env.CACHEBLEND_TEST_RGW;
  let skipped = '';
  if (given === 'off') skipped = 'CACHEBLEND_TEST_RGW=off';
  else if (!given && !installed('radosgw')) {
    skipped = 'radosgw is not installed (apt-get install -y radosgw ceph-mon ceph-osd)';
  }
  if (skipped) {
    const message = `The radosgw (real S3 server) tests are SKIPPED: ${skipped}.`;
    if (process.env.CI === 'true') throw new Error(`${message} CI must run them (see .ci/run).`);
    banner(message);
    project.provide('rgwDir', null);
    project.provide('rgwSkipped', skipped);
    return async () => banner(message);
  }
  project.provide('rgwSkipped', '');
  if (given) {
    project.provide('rgwDir', path.resolve(given));
    return undefined;
  }
  // Started in the background: its 5-10 s overlap the tests that do not need it.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cacheblend-rgw-'));
  project.provide('rgwDir', dir);
  const child = spawn('bash', [path.join(INFRA, 'start-rgw.sh'), dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<void>((resolve) => {
    child.on('close', (code) => {
      writeFileSync(path.join(dir, 'start.rc'), `${String(code)}\n${stderr}`);
      resolve();
    });
  });
  return async () => {
    await done;
    spawnSync('bash', [path.join(INFRA, 'stop-rgw.sh'), dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
}

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // radosgw, a real S3 server, for the tests that run on it as well as on s3rver (skipped loudly
    // when it is not installed; an error under CI=true).
    globalSetup: ['test/setup/rgw.ts'],
  },
});

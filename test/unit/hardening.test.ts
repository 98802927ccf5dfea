/** The pieces of request hardening that need no server: the JSON depth scan and path scrubbing. */
import { describe, expect, it } from 'vitest';
import { jsonDepthExceeds, withoutPaths } from '../../api/middleware/hardening.js';

describe('jsonDepthExceeds', () => {
  it('counts nesting outside strings only', () => {
    expect(jsonDepthExceeds(Buffer.from('{"a":[1,{"b":[2]}]}'), 4)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('{"a":[1,{"b":[2]}]}'), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from(`{"s":"${'['.repeat(500)}\\"{"}`), 2)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from(`${'['.repeat(10_000)}${']'.repeat(10_000)}`), 64)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from('[[],[],[],[]]'), 2)).toBe(false);
  });
});

describe('withoutPaths', () => {
  it('replaces absolute paths and file URLs, and leaves addresses and URLs alone', () => {
    expect(
      withoutPaths(
        "cannot write /tmp/cacheblend-svc-x1/blocker/kv/docs/a.json: ENOTDIR: not a directory, mkdir '/tmp/cacheblend-svc-x1/blocker'",
      ),
    ).toBe("cannot write <path>: ENOTDIR: not a directory, mkdir '<path>'");
    expect(withoutPaths('file store file:///srv/data/kv is not writable')).toBe(
      'file store <path> is not writable',
    );
    expect(withoutPaths('Redis is unavailable: connect ECONNREFUSED 127.0.0.1:6379')).toBe(
      'Redis is unavailable: connect ECONNREFUSED 127.0.0.1:6379',
    );
    expect(withoutPaths('GET http://minio:9000/bucket/key failed')).toBe(
      'GET http://minio:9000/bucket/key failed',
    );
    expect(withoutPaths('/abs at the start')).toBe('<path> at the start');
  });
});

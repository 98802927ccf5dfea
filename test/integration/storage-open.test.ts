import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.js';
import { openObjectStore } from '../../core/storage/index.js';
import { uniquePrefix } from '../helpers/services.js';

describe('openObjectStore', () => {
  it.each([
    'ftp://x/y',
    'redis://localhost',
    'kv',
    '/abs/path',
    'file://',
    's3://',
    's3://Bad_Bucket/x',
    's3://ok-bucket/../x',
  ])('rejects %j with ConfigError', (url) => {
    expect(() => openObjectStore(url)).toThrow(ConfigError);
  });

  it('shares named memory stores and isolates anonymous ones', async () => {
    const name = `shared-${uniquePrefix().slice(0, -1)}`;
    await openObjectStore(`memory://${name}`).put('k', Buffer.from('v'));
    expect((await openObjectStore(`memory://${name}`).get('k'))?.toString()).toBe('v');
    await openObjectStore('memory://').put('k', Buffer.from('v'));
    expect(await openObjectStore('memory://').get('k')).toBeNull();
  });
});

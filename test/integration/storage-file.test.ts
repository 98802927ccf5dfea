import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { StorageError, UnavailableError } from '../../core/errors.js';
import { DeadlineObjectStore, openObjectStore } from '../../core/storage/index.js';
import { collect, useTempDirs } from '../helpers/stores.js';

const tempDir = useTempDirs();

describe('file store specifics', () => {
  it('never lists staged (in-progress or crashed) writes and cleans up stale ones', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, '.tmp'), { recursive: true });
    const stale = path.join(dir, '.tmp', 'crashed-writer');
    const live = path.join(dir, '.tmp', 'in-progress');
    await writeFile(stale, 'partial');
    await writeFile(live, 'partial');
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, old, old);
    const store = openObjectStore(`file://${dir}`);
    await store.put('k', Buffer.from('v'));
    expect(await collect(store.list(''))).toEqual(['k']);
    expect(await readdir(path.join(dir, '.tmp'))).toEqual(['in-progress']);
  });

  it('leaves no staged file behind after puts, failed ones included', async () => {
    const dir = await tempDir();
    const store = openObjectStore(`file://${dir}`);
    await store.put('a', Buffer.from('file'));
    // 'a' is a file, so 'a/b' cannot be created in a file store.
    await expect(store.put('a/b', Buffer.from('x'))).rejects.toBeInstanceOf(StorageError);
    expect(await readdir(path.join(dir, '.tmp'))).toEqual([]);
    expect(await collect(store.list(''))).toEqual(['a']);
    expect((await store.get('a'))!.toString()).toBe('file');
  });

  it('treats a "directory" key as missing', async () => {
    const store = openObjectStore(`file://${await tempDir()}`);
    await store.put('dir/obj', Buffer.from('x'));
    expect(await store.get('dir')).toBeNull();
    expect(await store.head('dir')).toBeNull();
    expect(await store.getRange('dir', 0, 1)).toBeNull();
    await store.delete('dir');
    expect(await store.get('dir/obj')).not.toBeNull();
  });

  it('resolves relative file:// URLs against cwd', async () => {
    const dir = await tempDir();
    for (const url of ['file://./rel/kv', 'file://rel/kv']) {
      const store = openObjectStore(url, { cwd: dir });
      expect(store).toBeInstanceOf(DeadlineObjectStore); // a FileObjectStore with deadlines
      expect(store.describe()).toBe(`file://${path.join(dir, 'rel/kv')}`);
    }
    const store = openObjectStore('file://./rel/kv', { cwd: dir });
    await store.put('x/y', Buffer.from('z'));
    expect(await readdir(path.join(dir, 'rel', 'kv', 'x'))).toEqual(['y']);
  });

  it('ping fails with UnavailableError when the directory cannot be created', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'file'), 'x');
    const store = openObjectStore(`file://${path.join(dir, 'file', 'sub')}`);
    await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
  });
});

/** The batch's inputs: the .txt/.md files under the folders and files named, and a document id for each. */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { DOCUMENT_ID_RE } from '../core/documents/manifest.js';

const TEXT_EXT = new Set(['.txt', '.md']);

/** Every text file of the inputs (folders walked recursively, in name order), with its path relative to its folder. */
export async function collectFiles(inputs: string[]): Promise<{ file: string; rel: string }[]> {
  const out: { file: string; rel: string }[] = [];
  const walk = async (dir: string, root: string) => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) await walk(full, root);
      else if (e.isFile() && TEXT_EXT.has(path.extname(e.name).toLowerCase())) {
        out.push({ file: full, rel: path.relative(root, full) });
      }
    }
  };
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new InvalidArgumentError(`${input}: no such file or folder`);
    }
    if (info.isDirectory()) await walk(path.resolve(input), path.resolve(input));
    else out.push({ file: path.resolve(input), rel: path.basename(input) });
  }
  return out;
}

/** A document id from a relative path: `notes/a b.md` → `notes--a-b.md` (hashed when too long). */
export function documentIdFor(rel: string, prefix = ''): string {
  let id = `${prefix}${rel.split(path.sep).join('--')}`
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '');
  if (id.length > 128 || !DOCUMENT_ID_RE.test(id)) {
    const hash = createHash('sha256').update(rel).digest('hex').slice(0, 16);
    id = `${id.slice(0, 100).replace(/^[^A-Za-z0-9]+/, '') || 'doc'}-${hash}`;
  }
  return id;
}

/**
 * docs/configuration.md's settings table is the declarations' (core/config/settings.ts): same variables in
 * the same order, same defaults, same doc lines. Rewrite it with `npm run docs:config` after changing one.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_HELP } from '../../core/config/help.js';
import { CONFIG_VARIABLES, loadConfig } from '../../core/config/index.js';
import { SETTINGS, settingDefault, settingsTable, type SettingName } from '../../core/config/settings.js';
import { projectRoot } from '../../core/util/fs.js';

/** The rows of the first Markdown table under `## heading`, as trimmed cells (header and rule left out). */
function tableRows(markdown: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.startsWith('| Variable'));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
  }
  return rows;
}

describe('docs/configuration.md', () => {
  const docs = readFileSync(`${projectRoot()}/docs/configuration.md`, 'utf8');

  it('lists every setting as declared: name, default and doc line, in order', () => {
    expect(tableRows(docs)).toEqual(settingsTable());
  });
});

describe('the declarations', () => {
  it('are what the schema reads, help shows and loadConfig defaults to', () => {
    expect(CONFIG_VARIABLES).toEqual(Object.keys(SETTINGS));
    expect(Object.keys(CONFIG_HELP)).toEqual(Object.keys(SETTINGS));
    const config = loadConfig({});
    const declared = Object.entries(SETTINGS).filter(([, s]) => 'key' in s) as [
      SettingName,
      { key: keyof typeof config },
    ][];
    expect(declared.length).toBeGreaterThan(20);
    for (const [name, s] of declared) expect(config[s.key], name).toEqual(settingDefault(name));
  });

  it('give the engine its device precision default (DEVICE_DTYPE)', () => {
    expect(loadConfig({}).deviceDtype).toBe(settingDefault('DEVICE_DTYPE'));
    expect(CONFIG_HELP.DEVICE_DTYPE.default).toBe(settingDefault('DEVICE_DTYPE'));
  });
});

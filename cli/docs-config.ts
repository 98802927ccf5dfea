/**
 * Rewrites the settings table of docs/configuration.md from the declarations (core/config/settings.ts):
 * `npm run docs:config`. test/unit/config-docs.test.ts fails while the two disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsTable } from '../core/config/settings.js';
import { projectRoot } from '../core/util/fs.js';

const HEADER = ['Variable', 'Default', 'Meaning'];

/** A Markdown table with columns padded as prettier pads them. */
function markdownTable(rows: string[][]): string[] {
  const all = [HEADER, ...rows];
  const widths = HEADER.map((_, i) => Math.max(...all.map((r) => [...r[i]].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(HEADER), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)];
}

const file = `${projectRoot()}/docs/configuration.md`;
const lines = readFileSync(file, 'utf8').split('\n');
const start = lines.findIndex((l) => l.startsWith('| Variable'));
let end = start;
while (lines[end]?.startsWith('|')) end++;
lines.splice(start, end - start, ...markdownTable(settingsTable()));
writeFileSync(file, lines.join('\n'));

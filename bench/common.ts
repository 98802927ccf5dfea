import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../core/model/onnx/builder.js';

/** Shared pieces of the benchmark scripts: machine description, medians, tables, JSON and SVG output. */

export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

/** stories260K multi-chunk inputs, shared with the tests (test/fixtures/stories/story-sets.json). */
export function storySets(): { chunks: string[]; question: string }[] {
  const file = new URL('../../test/fixtures/stories/story-sets.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { sets: { chunks: string[]; question: string }[] }).sets;
}

export function machine(ep: string): Record<string, unknown> {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    onnxruntime: ort.env.versions?.node ?? 'unknown',
    executionProvider: ep,
    date: new Date().toISOString(),
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function timeMedian(
  reps: number,
  fn: () => Promise<unknown>,
): Promise<{ median: number; all: number[] }> {
  const all: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    all.push(performance.now() - t0);
  }
  return { median: median(all), all };
}

export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => `| ${r.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  console.log(line(cells[0]));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of cells.slice(1)) console.log(line(r));
}

function fmt(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toPrecision(3);
}

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = `${RESULTS_DIR}${name}`;
  writeFileSync(path, typeof data === 'string' ? data : `${JSON.stringify(data, null, 2)}\n`);
  return path;
}

/** onnxruntime's own MatMul rate (GFLOP/s) on an n×n×n product with a constant weight, median of reps. */
export async function matmulRate(n = 2048, reps = 5, ep = 'cpu'): Promise<number> {
  const g = new GraphBuilder('matmul');
  const a = g.input('a', 'float', [n, n]);
  const w = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  g.output('y', g.o('MatMul', [a, g.weight('w', w, [n, n])]), 'float', [n, n]);
  const s = await ort.InferenceSession.create(g.toBytes(), {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
  });
  const x = new ort.Tensor(
    'float32',
    new Float32Array(n * n).map((_, i) => (i % 97) / 97),
    [n, n],
  );
  await s.run({ a: x });
  const { median: ms } = await timeMedian(reps, () => s.run({ a: x }));
  await s.release();
  return (2 * n ** 3) / ms / 1e6;
}

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

/** A small dependency-free SVG line chart. */
export function lineChart(opts: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logY?: boolean;
  /** Fixed y range (linear axis only); by default 0 … 1.1 × the largest value. */
  yRange?: [number, number];
  /** x values to label; by default every distinct x of the points. */
  xTicks?: number[];
}): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 170, t: 40, b: 50 };
  const xs = opts.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = opts.series.flatMap((s) => s.points.map((p) => p.y));
  const tf = (y: number) => (opts.logY ? Math.log10(Math.max(y, 1e-9)) : y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] =
    opts.yRange && !opts.logY
      ? opts.yRange
      : [opts.logY ? tf(Math.min(...ys)) : 0, tf(Math.max(...ys)) * (opts.logY ? 1 : 1.1)];
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((tf(y) - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - 60}" y="20" font-size="14">${opts.title}</text>`,
    `<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
    `<text x="${(W - m.r + m.l) / 2 - 40}" y="${H - 12}">${opts.xLabel}</text>`,
    `<text x="14" y="${m.t - 10}">${opts.yLabel}</text>`,
  ];
  for (const x of opts.xTicks ?? [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(`<text x="${px(x) - 10}" y="${H - m.b + 16}">${x}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    const label = opts.logY ? (10 ** v).toPrecision(2) : v.toPrecision(3);
    const y = H - m.b - ((v - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
    parts.push(`<text x="8" y="${y + 4}">${label}</text>`);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#ddd"/>`);
  }
  opts.series.forEach((s, i) => {
    const c = colors[i % colors.length];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    parts.push(
      `<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${px(p.x)},${py(p.y)}`).join(' ')}"/>`,
    );
    for (const p of pts) parts.push(`<circle cx="${px(p.x)}" cy="${py(p.y)}" r="3" fill="${c}"/>`);
    parts.push(`<rect x="${W - m.r + 12}" y="${m.t + i * 18}" width="12" height="12" fill="${c}"/>`);
    parts.push(`<text x="${W - m.r + 30}" y="${m.t + i * 18 + 10}">${s.name}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A small dependency-free SVG chart of labelled horizontal bars (values >= 0), with a reference line. */
export function barChart(opts: {
  title: string;
  xLabel: string;
  bars: { label: string; value: number; group?: string }[];
  reference?: { value: number; label: string };
}): string {
  const W = 720;
  const rowH = 22;
  const m = { l: 260, r: 70, t: 40, b: 50 };
  const H = m.t + m.b + rowH * opts.bars.length;
  const max = Math.max(...opts.bars.map((b) => b.value), opts.reference?.value ?? 0) * 1.1 || 1;
  const px = (v: number) => m.l + (v / max) * (W - m.l - m.r);
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];
  const groups = [...new Set(opts.bars.map((b) => b.group ?? ''))];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${m.l}" y="20" font-size="14">${opts.title}</text>`,
    `<text x="${m.l}" y="${H - 12}">${opts.xLabel}</text>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`,
  ];
  opts.bars.forEach((b, i) => {
    const y = m.t + i * rowH;
    const c = colors[groups.indexOf(b.group ?? '') % colors.length];
    parts.push(`<text x="${m.l - 6}" y="${y + 15}" text-anchor="end">${b.label}</text>`);
    parts.push(
      `<rect x="${m.l}" y="${y + 4}" width="${px(b.value) - m.l}" height="${rowH - 8}" fill="${c}"/>`,
    );
    parts.push(`<text x="${px(b.value) + 4}" y="${y + 15}">${b.value.toPrecision(3)}</text>`);
  });
  if (opts.reference) {
    const x = px(opts.reference.value);
    parts.push(
      `<line x1="${x}" y1="${m.t}" x2="${x}" y2="${H - m.b}" stroke="#888" stroke-dasharray="4 3"/>`,
    );
    parts.push(`<text x="${x + 3}" y="${H - m.b + 14}" fill="#555">${opts.reference.label}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** Synthetic corpora for the retrieval and matching benchmarks, and the heap they take. */

/** Words drawn with Zipf(1) frequencies (word i with probability ∝ 1/(i+1)) from `words`, by `rand`. */
export function zipfWords(
  words: readonly string[],
  rand: () => number,
): { word(): string; sentence(n: number): string } {
  // The cumulative table, searched by bisection.
  const cumulative = new Float64Array(words.length);
  let total = 0;
  for (let i = 0; i < words.length; i++) cumulative[i] = total += 1 / (i + 1);
  const word = (): string => {
    const r = rand() * total;
    let lo = 0;
    let hi = words.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] < r) lo = mid + 1;
      else hi = mid;
    }
    return words[lo];
  };
  return { word, sentence: (n) => Array.from({ length: n }, word).join(' ') };
}

/** MiB of heap in use, after a collection when node runs with --expose-gc (the bench scripts do). */
export function heapMiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

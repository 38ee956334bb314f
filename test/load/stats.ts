/** Small statistics for the load summary. */

export function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** "n=… median=… p95=… p99=… max=…" in ms, or "n=0". */
export function describe(xs: number[]): string {
  if (xs.length === 0) return 'n=0';
  const s = [...xs].sort((a, b) => a - b);
  const f = (v: number) => v.toFixed(1).padStart(7);
  return `n=${String(s.length).padEnd(5)} median=${f(quantile(s, 0.5))}  p95=${f(quantile(s, 0.95))}  p99=${f(quantile(s, 0.99))}  max=${f(s[s.length - 1]!)} ms`;
}

export function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/** Counts of each distinct string. */
export function tally(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

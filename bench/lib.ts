import { cpus, totalmem, release, availableParallelism, loadavg } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';

/** Small helpers shared by the benchmark: timing, percentiles, bounded concurrency, progress. */

/** Progress goes to stderr; stdout carries only the final JSON. */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export const round = (n: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export const mb = (bytes: number): number => round(bytes / (1024 * 1024), 1);

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** Latency figures in milliseconds. */
export function summarize(samples: number[]): LatencySummary {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { n: s.length, p50: round(percentile(s, 50)), p95: round(percentile(s, 95)), p99: round(percentile(s, 99)), max: round(s[s.length - 1] ?? NaN), mean: round(mean) };
}

/** Run `fn(i)` for i in [0, n) with at most `limit` in flight. */
export async function pool(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, n) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      await fn(i);
    }
  });
  await Promise.all(lanes);
}

/** Poll `check` until it returns true or the deadline passes; returns whether it became true. */
export async function until(check: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function machineInfo(): Record<string, unknown> {
  const c = cpus();
  return {
    cpus: c.length,
    availableParallelism: availableParallelism(),
    cpuModel: c[0]?.model ?? 'unknown',
    totalMemoryMB: mb(totalmem()),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    kernel: release(),
    loadAverage: loadavg().map((l) => round(l)),
  };
}

/**
 * CPU seconds spent per process name (Linux /proc) between start and stop: every process's utime+stime is
 * sampled every `everyMs`; a process that started after `start` counts from zero, one that ends between two
 * samples loses at most its last interval. What the bench's own process spends polling shows as `node`.
 */
export function cpuByProcess(everyMs = 100): { stop: () => Record<string, number> } {
  const tick = 100; // USER_HZ on Linux
  const bootTicks = () => Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * tick);
  const since = bootTicks();
  const seen = new Map<string, { comm: string; first: number; last: number }>();
  const sample = () => {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let s: string;
      try {
        s = readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue; // gone
      }
      const r = s.lastIndexOf(')');
      const comm = s.slice(s.indexOf('(') + 1, r);
      const f = s.slice(r + 2).split(' ');
      const used = Number(f[11]) + Number(f[12]);
      const started = Number(f[19]);
      const key = `${pid}/${started}`;
      const p = seen.get(key);
      if (p) p.last = used;
      else seen.set(key, { comm, first: started >= since ? 0 : used, last: used });
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const out: Record<string, number> = {};
      for (const p of seen.values()) if (p.last > p.first) out[p.comm] = (out[p.comm] ?? 0) + (p.last - p.first) / tick;
      return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, round(v)]));
    },
  };
}

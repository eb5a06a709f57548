/**
 * The benchmark's server process: the real platform (API + in-process workers) on the configuration
 * it is given, so the client's memory and CPU are not counted as the server's. Talks to bench/run.ts
 * over the fork IPC channel: sends `ready` with its URL, answers `rss` (max resident set size since
 * the last reset, sampled every 50 ms, the event loop's delay since then, and the process's CPU time so far), `gc` (memory after a full collection) and `stop`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createPlatform } from '../src/app.js';
import type { Config } from '../src/core/config.js';

type Msg = { type: 'rss'; reset?: boolean } | { type: 'gc' } | { type: 'stop' };

const config = JSON.parse(process.env.HMC_BENCH_CONFIG ?? 'null') as Config | null;
if (!config || !process.send) {
  process.stderr.write('bench/server.ts is started by bench/run.ts (fork with HMC_BENCH_CONFIG)\n');
  process.exit(2);
}

let maxRss = process.memoryUsage.rss();
const sampler = setInterval(() => {
  const r = process.memoryUsage.rss();
  if (r > maxRss) maxRss = r;
}, 50);

// how long the event loop was held up (a request arriving then waits as long): reset with the RSS maximum
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();

const platform = await createPlatform(config, { logger: false, migrate: false });
const url = await platform.listen();
process.send({ type: 'ready', url, rss: process.memoryUsage.rss() });

process.on('message', (m: Msg) => {
  if (m.type === 'rss') {
    const current = process.memoryUsage.rss();
    maxRss = Math.max(maxRss, current);
    const mem = process.memoryUsage();
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    const loop = { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) };
    process.send!({ type: 'rss', max: maxRss, current, heapTotal: mem.heapTotal, heapUsed: mem.heapUsed, external: mem.external, cpu: process.cpuUsage(), loop });
    if (m.reset) {
      maxRss = current;
      loopDelay.reset();
    }
  } else if (m.type === 'gc') {
    // live heap after a full collection (run.ts starts us with --expose-gc), to tell garbage from a leak
    (globalThis as { gc?: () => void }).gc?.();
    const mem = process.memoryUsage();
    process.send!({ type: 'gc', rss: mem.rss, heapTotal: mem.heapTotal, heapUsed: mem.heapUsed });
  } else if (m.type === 'stop') {
    clearInterval(sampler);
    void platform.close().then(
      () => process.send!({ type: 'stopped' }, () => process.exit(0)),
      (e) => {
        process.stderr.write(`server close failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  }
});

/**
 * Entry point of the crash test's child processes (a stand-in for `hmc serve` / `hmc worker`, so the
 * test does not depend on the CLI). Configuration comes from HMC_* environment variables.
 *
 *   node --import tsx test/crash/serve.ts serve    API (+ HMC_WORKERS in-process workers) on HMC_PORT
 *   node --import tsx test/crash/serve.ts worker   one worker, no API (PostgreSQL scale-out)
 *
 * When ready it prints one JSON line `{"ready":true,"pid":...,"owners":[...]}` on stdout; `owners` are
 * the workers' lease owner ids (as written to `jobs.locked_by`), so the test can tell who holds a job.
 */
import { configFromEnv } from '../../src/core/config.js';
import { createPlatform } from '../../src/app.js';

const mode = process.argv[2] ?? 'serve';
if (mode !== 'serve' && mode !== 'worker') throw new Error(`unknown mode ${mode}`);

const config = configFromEnv(process.env);
const platform = await createPlatform(config, mode === 'worker' ? { api: false, workers: 1 } : {});
const url = mode === 'serve' ? await platform.listen() : null;
process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid, mode, url, owners: platform.workers.map((w) => w.owner) })}\n`);

// A graceful stop for completeness; the crash test itself only ever uses SIGKILL.
process.once('SIGTERM', () => {
  void platform.close().finally(() => process.exit(0));
});

import type { OptionSpec } from '../args.js';
import type { CommandSpec, Ctx } from '../command.js';
import { configFromEnv, type Config } from '../../core/config.js';
import { EXIT_OK, UsageError } from '../errors.js';
import { toJson } from '../output.js';

/**
 * Commands that run the platform in this process and open the database themselves (the API commands never
 * do). src/app.ts is imported lazily: it pulls in Fastify, Kysely and the database drivers, which API
 * commands do not need and should not pay for at start-up.
 */
const loadApp = () => import('../../app.js');

const DATA_DIR: Record<string, OptionSpec> = {
  'data-dir': { type: 'string', value: 'DIR', help: 'where the database, backups and homes live (env HMC_DATA_DIR, default ./data)' },
};
const JSON_OUT: Record<string, OptionSpec> = { json: { type: 'boolean', help: 'print one JSON object' } };

/** Config from the environment (HMC_*) with this command's flags on top. */
export function platformConfig(ctx: Ctx): Config {
  return configFromEnv(ctx.io.env, {
    dataDir: ctx.opts.str('data-dir'),
    host: ctx.opts.str('host'),
    port: ctx.opts.int('port', { min: 0, max: 65535 }),
    workers: ctx.opts.int('workers', { min: 0 }),
  });
}

export const databaseKind = (c: Config): 'sqlite' | 'postgres' => (c.databaseUrl ? 'postgres' : 'sqlite');

/** The first token, once: on its own line so it can be copied, with where to put it. */
function printToken(ctx: Ctx, config: Config, token: string): void {
  ctx.out(`Initialised HMC in ${config.dataDir} (database: ${databaseKind(config)}).\n`);
  ctx.out('Provider admin token; it is shown only this once, store it now (e.g. in HMC_TOKEN):\n\n');
  ctx.out(`  ${token}\n\n`);
}

async function init(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  const { initPlatform } = await loadApp();
  const r = await initPlatform(config);
  const token = r.created ? r.token : null;
  if (ctx.json) ctx.out(toJson({ token, dataDir: config.dataDir, database: databaseKind(config) }));
  else if (token) printToken(ctx, config, token);
  else ctx.out(`HMC is already initialised in ${config.dataDir} (database: ${databaseKind(config)}); no token printed. Make more with \`hmc token create\`.\n`);
  return EXIT_OK;
}

/**
 * Waits for SIGINT/SIGTERM, then runs `stop`. A second signal while stopping exits at once: an operator
 * pressing Ctrl-C twice wants out, even if a job is slow to give up its lease (the lease expires anyway).
 */
async function runUntilSignal(ctx: Ctx, stop: () => Promise<void>): Promise<void> {
  const signal = await new Promise<string>((resolve) => {
    const off = ctx.io.onStopSignal((s) => {
      off();
      resolve(s);
    });
  });
  ctx.err(`${signal}: stopping (again to force)\n`);
  const off = ctx.io.onStopSignal(() => {
    ctx.err('forced stop\n');
    ctx.io.exit(1);
  });
  try {
    await stop();
  } finally {
    off();
  }
}

async function serve(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  if (!config.databaseUrl && config.workers < 1) {
    throw new UsageError('with SQLite the provider jobs run inside `hmc serve`: --workers must be at least 1');
  }
  const { initPlatform, createPlatform } = await loadApp();
  // a first `hmc serve` on an empty data dir just works, like a trial install should
  const r = await initPlatform(config);
  if (r.created && r.token) printToken(ctx, config, r.token);
  const platform = await createPlatform(config);
  const url = await platform.listen();
  ctx.out(`HMC listening on ${url} (database: ${databaseKind(config)}, workers: ${config.workers})\n`);
  await runUntilSignal(ctx, () => platform.close());
  return EXIT_OK;
}

async function worker(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  if (!config.databaseUrl) {
    throw new UsageError('hmc worker needs PostgreSQL (set HMC_DATABASE_URL); with SQLite (embedded mode) `hmc serve` runs the workers in its own process');
  }
  // one worker claiming up to N jobs at a time; scale further by running more `hmc worker` processes
  const concurrency = ctx.opts.int('concurrency', { min: 1 });
  const { createPlatform } = await loadApp();
  const platform = await createPlatform(config, { api: false, ...(concurrency ? { workers: 1, concurrency } : {}) });
  ctx.out(`HMC worker running (${concurrency ? `${concurrency} jobs at a time` : `${config.workers} worker(s)`}); stop with SIGTERM\n`);
  await runUntilSignal(ctx, () => platform.close());
  return EXIT_OK;
}

/**
 * `hmc transport`: the transport agents of this node's data planes on their own (scale-out; `hmc serve` runs
 * them too), with the domain cache and a health/metrics listener. No API, no workers.
 */
async function transport(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  const dirs = ctx.opts.list('dir');
  if (dirs.length === 0 && !config.dataplaneRoot) throw new UsageError('give --dir DIR (a data plane rendered with --agent-port) or set HMC_DATAPLANE_ROOT');
  const { resolve } = await import('node:path');
  const { readManifest } = await import('../../dataplane/instance.js');
  const { agentDataplanes, startHealthServer } = await import('../../transport/service.js');
  const manifests = dirs.length > 0 ? dirs.map((d) => readManifest(resolve(d))) : agentDataplanes(config.dataplaneRoot!);
  if (manifests.length === 0) throw new UsageError(`no data plane rendered with a transport agent under ${config.dataplaneRoot}`);
  const { createPlatform } = await loadApp();
  const platform = await createPlatform(config, { api: false, workers: 0, migrate: false, transport: false });
  try {
    const agents = await platform.startTransport(manifests);
    const http = await startHealthServer(ctx.opts.str('http') ?? config.transportHttp, platform.registry, () => {
      const cache = platform.domainCache?.status();
      return { ok: agents.length > 0 && cache !== undefined && cache.source !== 'empty', detail: { agents: agents.map((a) => a.status()), domainCache: cache } };
    });
    ctx.out(`HMC transport agents running for ${manifests.map((m) => m.server.name).join(', ')}; health and metrics on port ${http.port}; stop with SIGTERM\n`);
    await runUntilSignal(ctx, async () => {
      await new Promise<void>((r) => http.server.close(() => r()));
      await platform.close();
    });
  } catch (e) {
    await platform.close();
    throw e;
  }
  return EXIT_OK;
}

async function migrateCommand(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  const { migrateDatabase } = await loadApp();
  const r = await migrateDatabase(config);
  if (ctx.json) {
    ctx.out(toJson({ applied: r.applied, backup: r.backup, dataDir: config.dataDir, database: databaseKind(config) }));
    return EXIT_OK;
  }
  if (r.applied.length === 0) ctx.out('The database is up to date; nothing applied.\n');
  else ctx.out(`Applied ${r.applied.length} migration(s):\n${r.applied.map((m) => `  ${m}\n`).join('')}`);
  if (r.backup) ctx.out(`Backup taken first: ${r.backup}\n`);
  return EXIT_OK;
}

export const platformCommands: CommandSpec[] = [
  {
    words: ['init'],
    summary: 'create the database and the first provider-admin token (printed once)',
    options: { ...DATA_DIR, ...JSON_OUT },
    kind: 'local',
    run: init,
  },
  {
    words: ['serve'],
    summary: 'run the API (and, with SQLite, the workers); initialises on first run',
    options: {
      ...DATA_DIR,
      port: { type: 'string', value: 'N', help: 'TCP port (env HMC_PORT, default 8080)' },
      host: { type: 'string', value: 'H', help: 'address to listen on (env HMC_HOST, default 127.0.0.1)' },
      workers: { type: 'string', value: 'N', help: 'in-process workers (env HMC_WORKERS, default 2)' },
    },
    kind: 'local',
    run: serve,
  },
  {
    words: ['worker'],
    summary: 'run provider-job workers only (PostgreSQL scale-out)',
    options: { ...DATA_DIR, concurrency: { type: 'string', value: 'N', help: 'jobs run at a time (default: HMC_WORKERS workers of 4 jobs each)' } },
    kind: 'local',
    run: worker,
  },
  {
    words: ['transport'],
    summary: "run this node's transport agents (auto-replies, internal stamp) without the API (scale-out)",
    options: {
      ...DATA_DIR,
      dir: { type: 'string', value: 'DIR', multiple: true, help: 'a data plane rendered with --agent-port (repeatable; default: every one under HMC_DATAPLANE_ROOT)' },
      http: { type: 'string', value: 'HOST:PORT', help: 'health and metrics listener (env HMC_TRANSPORT_HTTP, default 127.0.0.1:8026)' },
    },
    kind: 'local',
    run: transport,
  },
  {
    words: ['migrate'],
    summary: 'apply pending database migrations (after a backup)',
    options: { ...DATA_DIR, ...JSON_OUT },
    kind: 'local',
    run: migrateCommand,
  },
];

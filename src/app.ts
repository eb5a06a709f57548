import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import type { Config } from './core/config.js';
import { SYSTEM } from './core/tenancy.js';
import { openStore, type Store } from './store/db.js';
import { migrate, type MigrateResult } from './store/migrate.js';
import { MIGRATIONS } from './migrations.js';
import { Engine } from './engine/engine.js';
import { createTxRunner } from './engine/tx-runner.js';
import { Worker } from './engine/worker.js';
import { registerEngineRoutes, engineVisibility } from './engine/routes.js';
import { createPasswordHasher, type PasswordHasher } from './directory/passwords.js';
import { directoryProcedures, P } from './directory/procedures.js';
import { directoryJobs } from './directory/jobs.js';
import { directoryVisibility, registerDirectoryRoutes } from './directory/routes.js';
import type { HomeDirectoryProvider } from './directory/ports.js';
import { createFilesProvider } from './dataplane/files-provider.js';
import { createFilesMailstore } from './dataplane/files-mailstore.js';
import { createDovecotMailstore } from './dataplane/dovecot-mailstore.js';
import { followDomainClassChanges, followJobs } from './dataplane/follow.js';
import { authCacheJobs, followAuthCaches } from './dataplane/auth-cache.js';
import { dataplaneDovecotConfigs, doveadmUsage, parseListenAddress, startPolicyService, type PolicyService } from './dataplane/policy.js';
import { moveJobs, moveProcedures } from './resources/moves.js';
import { purgeDataJobs } from './resources/purge.js';
import type { MailboxDataProvider } from './resources/ports.js';
import { plansProcedures } from './plans/procedures.js';
import { plansVisibility, registerPlansRoutes } from './plans/routes.js';
import { DAY_MS, type MailSettings } from './mail/addresses.js';
import { groupMailProcedures } from './mail/groups-procedures.js';
import { registerGroupMailRoutes } from './mail/groups-routes.js';
import { publicFolderProcedures } from './mail/public-folders-procedures.js';
import { publicFolderVisibility, registerPublicFolderRoutes } from './mail/public-folders-routes.js';
import { grantProcedures } from './mail/grants-procedures.js';
import { registerGrantRoutes } from './mail/grants-routes.js';
import { fullAccessProcedures } from './mail/full-access.js';
import { registerFullAccessRoutes } from './mail/full-access-routes.js';
import { followFullAccessChanges, fullAccessJobs } from './dataplane/acl.js';
import { followPublicFolderChanges, publicFolderJobs } from './dataplane/public-folders.js';
import { autoReplyProcedures } from './mail/auto-reply.js';
import { registerAutoReplyRoutes } from './mail/auto-reply-routes.js';
import { domainProcedures } from './mail/domains-procedures.js';
import { domainVisibility, registerDomainRoutes } from './mail/domains-routes.js';
import { mailboxProcedures } from './mail/mailboxes-procedures.js';
import { mailboxVisibility, registerMailboxRoutes } from './mail/mailboxes-routes.js';
import { contactProcedures } from './mail/contacts.js';
import { registerContactRoutes } from './mail/contacts-routes.js';
import { registerMailDirectoryHooks } from './mail/directory-hooks.js';
import { directoryHooks } from './directory/hooks.js';
import { registerMailCsvRoutes } from './mail/csv-routes.js';
import { importGroup } from './mail/groups-import.js';
import { resourceProcedures } from './resources/procedures.js';
import { registerResourceRoutes, resourcesVisibility } from './resources/routes.js';
import { repairProcedures } from './resources/repair.js';
import { checkRoutes } from './resources/check-routes.js';
import { usageRoutes } from './dataplane/usage.js';
import { dataplaneCheck, dataplaneRepair, dataplaneRepairJobs } from './dataplane/check.js';
import { buildApi } from './api/server.js';
import { createMetrics } from './api/metrics.js';
import { Errors } from './core/errors.js';
import { DomainCache } from './transport/domain-cache.js';
import type { TransportAgent } from './transport/agent.js';
import type { Registry } from 'prom-client';
import { agentDataplanes, loadTransportSecret, startAgents } from './transport/service.js';
import type { Manifest } from './dataplane/render.js';
import { registerMailEventRoutes, registerTransportDirectoryHooks } from './transport/mail-events.js';

/** The composition root: wires configuration, database, engine, providers, workers and the API. */

export interface Platform {
  config: Config;
  store: Store;
  engine: Engine;
  homes: HomeDirectoryProvider;
  mailboxData: MailboxDataProvider;
  app: FastifyInstance | null;
  workers: Worker[];
  log: Logger;
  /** The transport domain cache, when started (PlatformOptions.domainCache, or for transport agents); its metrics are in /metrics. */
  readonly domainCache: DomainCache | null;
  /** The Postfix policy service, once `listen` started it (config.policyListen). */
  readonly policy: PolicyService | null;
  /** Prometheus registry behind /metrics (engine, domain cache, agents). */
  registry: Registry;
  /** The transport agents running in this process (startTransport). */
  readonly agents: TransportAgent[];
  /** Start listening (API, the policy service and transport agents when configured) and return the API's base URL. */
  listen(): Promise<string>;
  /**
   * Start a transport agent for each of these data planes (default: every one under config.dataplaneRoot that was
   * rendered with an agent), with the domain cache they share; returns the agents started.
   */
  startTransport(manifests?: Manifest[]): Promise<TransportAgent[]>;
  close(): Promise<void>;
}

export interface PlatformOptions {
  /** Serve the HTTP API (default true). */
  api?: boolean;
  /** In-process workers (default: config.workers). */
  workers?: number;
  /** Jobs per worker at once. */
  concurrency?: number;
  logger?: boolean;
  /** Replace the home-directory provider (tests use the real files provider on a scratch root). */
  homes?: HomeDirectoryProvider;
  /** Replace the mailbox-data provider (default: the data planes' Dovecot when config.dataplaneRoot is set, else the files provider under config.mailstoreFilesRoot). */
  mailboxData?: MailboxDataProvider;
  /** Skip migrations (they are run by `hmc migrate` / `hmc init`); default: migrate on start. */
  migrate?: boolean;
  /**
   * Run the transport domain cache in this process even without transport agents (default false; the agents
   * start it themselves).
   */
  domainCache?: boolean;
  /** false: never start transport agents in `listen` (default: for every data plane rendered with one). */
  transport?: boolean;
}

function storeFor(config: Config, poolSize?: number): Store {
  return config.databaseUrl ? openStore({ url: config.databaseUrl }, { poolSize }) : openStore({ sqlitePath: join(config.dataDir, 'hmc.db') });
}

/** Apply pending migrations (SQLite: backing up an existing database first). */
export async function migrateDatabase(config: Config): Promise<MigrateResult> {
  const store = storeFor(config, 2);
  try {
    return await migrate(store, MIGRATIONS, { backupDir: join(config.dataDir, 'backups') });
  } finally {
    await store.close();
  }
}

/** True when the database already has a provider-admin token (the platform was initialised). */
async function hasAdminToken(store: Store): Promise<boolean> {
  const r = await store.db.selectFrom('tokens').select('id').where('role', '=', 'provider_admin').where('revoked_at', 'is', null).limit(1).execute();
  return r.length > 0;
}

/**
 * `hmc init`: migrate, then create the first provider-admin token through the engine (so it is
 * audited like everything else). The token is returned once and never again.
 */
export async function initPlatform(config: Config): Promise<{ token: string | null; created: boolean; migrations: MigrateResult }> {
  const migrations = await migrateDatabase(config);
  const platform = await createPlatform(config, { api: false, workers: 0, migrate: false });
  try {
    if (await hasAdminToken(platform.store)) return { token: null, created: false, migrations };
    const out = await platform.engine.submit<{ token: string }>(SYSTEM, P.createToken, { name: 'initial provider admin', role: 'provider_admin' });
    return { token: out.result.token, created: true, migrations };
  } finally {
    await platform.close();
  }
}

export function isInitialised(config: Config): boolean {
  return config.databaseUrl ? true : existsSync(join(config.dataDir, 'hmc.db'));
}

export async function createPlatform(config: Config, opts: PlatformOptions = {}): Promise<Platform> {
  const log = pino({ level: opts.logger === false ? 'silent' : config.logLevel, redact: ['req.headers.authorization', '*.password', '*.passwordHash', '*.token'] });
  const store = storeFor(config);
  if (opts.migrate !== false) await migrate(store, MIGRATIONS, { backupDir: join(config.dataDir, 'backups') });
  const metrics = createMetrics(() => store.db);
  const hasher: PasswordHasher = createPasswordHasher({ cost: config.bcryptCost });
  const engine = new Engine({ store, txr: createTxRunner(store), log, prepare: { hashPassword: (p) => hasher.hash(p) }, metrics: metrics.engine });
  engine.register(...directoryProcedures);
  engine.register(...plansProcedures);
  const mailSettings: MailSettings = { addressQuarantineMs: config.addressQuarantineDays * DAY_MS, mailboxRetentionMs: config.mailboxRetentionDays * DAY_MS,
    managesDataplanes: config.dataplaneRoot !== undefined };
  engine.register(...groupMailProcedures(mailSettings), ...publicFolderProcedures(mailSettings), ...grantProcedures, ...fullAccessProcedures, ...autoReplyProcedures);
  engine.register(...domainProcedures, ...mailboxProcedures(mailSettings), ...contactProcedures, importGroup);
  engine.register(...resourceProcedures, ...moveProcedures);
  engine.register(...repairProcedures);
  registerMailDirectoryHooks(directoryHooks, mailSettings);
  registerTransportDirectoryHooks(directoryHooks);
  const homes = opts.homes ?? createFilesProvider(config.filesRoot);
  for (const [kind, h] of Object.entries(directoryJobs(engine, homes))) engine.handle(kind, h);
  // with rendered data planes, mailbox data lives in their Dovecot; otherwise plain directories
  const mailboxData = opts.mailboxData ?? (config.dataplaneRoot
    ? createDovecotMailstore({ db: store.db, dataplaneRoot: config.dataplaneRoot })
    : createFilesMailstore(config.mailstoreFilesRoot));
  for (const [kind, h] of Object.entries(moveJobs(engine, mailboxData))) engine.handle(kind, h);
  for (const [kind, h] of Object.entries(purgeDataJobs(engine, mailboxData))) engine.handle(kind, h);
  engine.register(dataplaneRepair);
  for (const [kind, h] of Object.entries(dataplaneRepairJobs(engine, config.dataplaneRoot))) engine.handle(kind, h);
  engine.followEvents(followDomainClassChanges(config.dataplaneRoot));
  engine.followChanges(followAuthCaches(config.dataplaneRoot));
  for (const [kind, h] of Object.entries(authCacheJobs(engine, config.dataplaneRoot))) engine.handle(kind, h);
  for (const [kind, h] of Object.entries(followJobs(config.dataplaneRoot))) engine.handle(kind, h);
  engine.followEvents(followFullAccessChanges(config.dataplaneRoot));
  for (const [kind, h] of Object.entries(fullAccessJobs(engine, config.dataplaneRoot))) engine.handle(kind, h);
  engine.followEvents(followPublicFolderChanges(config.dataplaneRoot));
  for (const [kind, h] of Object.entries(publicFolderJobs(engine, config.dataplaneRoot))) engine.handle(kind, h);

  let ready = false;
  const app = opts.api === false ? null : await buildApi({
    engine,
    registrars: [registerEngineRoutes, registerDirectoryRoutes, registerPlansRoutes, registerGroupMailRoutes, registerPublicFolderRoutes, registerGrantRoutes, registerFullAccessRoutes, registerAutoReplyRoutes, registerDomainRoutes, registerMailboxRoutes, registerContactRoutes, registerMailCsvRoutes, registerMailEventRoutes, registerResourceRoutes, usageRoutes(config.dataplaneRoot), checkRoutes(config.dataplaneRoot ? [dataplaneCheck(config.dataplaneRoot)] : [])],
    visibility: { ...engineVisibility, ...directoryVisibility, ...plansVisibility, ...publicFolderVisibility, ...domainVisibility, ...mailboxVisibility, ...resourcesVisibility },
    metrics,
    logger: opts.logger === false ? false : { level: config.logLevel },
    ready: () => ready,
  });
  const workerCount = opts.workers ?? config.workers;
  const workers = Array.from({ length: workerCount }, () =>
    new Worker(engine, { leaseMs: config.jobLeaseMs, concurrency: opts.concurrency ?? 4, pollMs: store.dialect === 'postgres' ? 200 : 1000 }).start());
  // the agents need the cache; under `hmc serve` they run for the data planes rendered with one
  const agentPlanes = opts.transport === false || !config.dataplaneRoot ? [] : agentDataplanes(config.dataplaneRoot);
  const domainCache = opts.domainCache || agentPlanes.length > 0 ? new DomainCache({
    store, databaseUrl: config.databaseUrl, snapshotPath: config.domainCacheSnapshot,
    refreshIntervalMs: config.domainCacheRefreshMinutes * 60_000, log, registry: metrics.registry,
  }) : null;
  await domainCache?.start();
  ready = true;

  let policy: PolicyService | null = null;
  let agents: TransportAgent[] = [];
  let transportCache = domainCache;
  /** Data planes whose agents run here, by directory: the agent settings they were started with, and the agent. */
  const served = new Map<string, { settings: string; agent: TransportAgent }>();
  const settingsOf = (m: Manifest) => JSON.stringify(m.agent);
  async function startTransport(manifests: Manifest[] = agentPlanes): Promise<TransportAgent[]> {
    if (manifests.length === 0) return [];
    if (!transportCache) {
      transportCache = new DomainCache({ store, databaseUrl: config.databaseUrl, snapshotPath: config.domainCacheSnapshot,
        refreshIntervalMs: config.domainCacheRefreshMinutes * 60_000, log, registry: metrics.registry });
      await transportCache.start();
    }
    const started = await startAgents(manifests, { db: store.db, cache: transportCache, secret: loadTransportSecret(config),
      replyPeriodMs: config.autoReplyPeriodHours * 3600_000, log, registry: metrics.registry });
    agents = [...agents, ...started];
    manifests.forEach((m, i) => served.set(m.dir, { settings: settingsOf(m), agent: started[i]! }));
    return started;
  }
  /**
   * A data plane rendered again with other agent settings (ports, host name): its agent stops (Postfix keeps
   * what it has not handed over, and the re-rendered Postfix sends to the new ports) and one with the new
   * settings starts.
   */
  async function restartTransport(manifests: Manifest[]): Promise<void> {
    for (const m of manifests) {
      const old = served.get(m.dir);
      if (old) {
        agents = agents.filter((a) => a !== old.agent);
        served.delete(m.dir);
        await old.agent.close();
      }
    }
    await startTransport(manifests);
  }
  let discoverTimer: NodeJS.Timeout | null = null;
  /** Under `hmc serve`: agents for data planes rendered under the root after the start, without a restart. */
  function discoverAgents(root: string, everyMs: number): void {
    let busy = false;
    const unreadable = new Set<string>();
    discoverTimer = setInterval(() => {
      if (busy) return;
      const found = agentDataplanes(root, (dir, e) => {
        if (!unreadable.has(dir)) log.warn({ err: e, dir }, 'a data plane manifest could not be read; looking again later');
        unreadable.add(dir);
      });
      const fresh = found.filter((m) => !served.has(m.dir));
      const changed = found.filter((m) => served.has(m.dir) && served.get(m.dir)!.settings !== settingsOf(m));
      if (fresh.length === 0 && changed.length === 0) return;
      busy = true;
      const servers = (l: Manifest[]) => l.map((m) => m.server.name);
      restartTransport(changed).then(
        () => changed.length > 0 && log.info({ servers: servers(changed) }, 'transport agents restarted for data planes rendered with other agent settings'),
        (e) => log.warn({ err: e, servers: servers(changed) }, 'transport agents for re-rendered data planes could not start; trying again later'),
      ).then(() => startTransport(fresh)).then(
        () => fresh.length > 0 && log.info({ servers: servers(fresh) }, 'transport agents started for new data planes'),
        (e) => log.warn({ err: e, servers: servers(fresh) }, 'transport agents for new data planes could not start; trying again later'),
      ).finally(() => {
        busy = false;
      });
    }, everyMs);
    discoverTimer.unref();
  }
  return {
    config, store, engine, homes, mailboxData, app, workers, log, registry: metrics.registry,
    get domainCache() {
      return transportCache;
    },
    get policy() {
      return policy;
    },
    get agents() {
      return agents;
    },
    startTransport,
    async listen() {
      if (!app) throw new Error('this platform has no API');
      const policyAt = config.policyListen ? parseListenAddress(config.policyListen) : null;
      if (policyAt && !config.dataplaneRoot) {
        throw Errors.invalidRequest('HMC_POLICY_LISTEN needs HMC_DATAPLANE_ROOT: mailbox usage is read from the Dovecot of each rendered data plane');
      }
      const url = await app.listen({ host: config.host, port: config.port });
      if (policyAt && config.dataplaneRoot) {
        policy = await startPolicyService({ db: store.db, ...policyAt, usage: doveadmUsage(dataplaneDovecotConfigs(config.dataplaneRoot)), log, registry: metrics.registry });
      }
      await startTransport();
      if (config.dataplaneRoot && opts.transport !== false && config.transportDiscoverSeconds > 0) discoverAgents(config.dataplaneRoot, config.transportDiscoverSeconds * 1000);
      return url;
    },
    async close() {
      ready = false;
      if (discoverTimer) clearInterval(discoverTimer);
      discoverTimer = null;
      // the agents first: Postfix keeps what they have not handed back and sends it again
      await Promise.all(agents.map((a) => a.close()));
      agents = [];
      await policy?.close();
      policy = null;
      if (app) await app.close();
      await Promise.all(workers.map((w) => w.stop()));
      await transportCache?.stop();
      await engine.txr.drain();
      await hasher.close();
      await store.close();
    },
  };
}

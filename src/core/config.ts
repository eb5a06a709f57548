import { join, resolve } from 'node:path';

/** Runtime configuration, from flags and environment. No I/O here: the CLI reads files and passes values in. */
export interface Config {
  /** Where the embedded database, backups and the files provider's root live. */
  dataDir: string;
  /** `postgres://...` selects PostgreSQL; unset means SQLite in `dataDir/hmc.db`. */
  databaseUrl: string | undefined;
  host: string;
  port: number;
  /** Root of the files provider (one home directory per user). */
  filesRoot: string;
  /** Where the files provider keeps mailbox data per mailstore (until the data plane's Dovecot does). */
  mailstoreFilesRoot: string;
  /** In-process workers to run (SQLite: always at least one when serving). */
  workers: number;
  /** Job lease; a worker that stops heartbeating loses its jobs after this long. */
  jobLeaseMs: number;
  /** bcrypt cost for new passwords ({BLF-CRYPT}). */
  bcryptCost: number;
  logLevel: string;
  /** Days a released address stays quarantined (unusable by anyone else). */
  addressQuarantineDays: number;
  /** Days a deleted mailbox is kept (disabled, restorable) before a job purges it. */
  mailboxRetentionDays: number;
  /** `host:port` where `hmc serve` runs the Postfix policy service (dataplane/policy.ts); unset: not run. */
  policyListen: string | undefined;
  /** Directory of rendered data planes, one `<mail server name>/dataplane.json` each (the policy service reads usage through their Dovecot). */
  dataplaneRoot: string | undefined;
  /** The transport domain cache's safety-net full refresh (HMC's "Cache Refresh Time"), minutes; changes arrive within seconds regardless. */
  domainCacheRefreshMinutes: number;
  /** The transport domain cache's snapshot file (served while the database cannot be read). */
  domainCacheSnapshot: string;
  /**
   * Key of the transport agents' internal stamp (HMC_TRANSPORT_SECRET, at least 32 characters), the same on every
   * node; unset: a random key kept in `<data dir>/transport-secret` (one-node platforms).
   */
  transportSecret: string | undefined;
  /** At most one auto-reply per sender and mailbox in this many hours (RFC 3834 suggests days; default 96 = 4 days). */
  autoReplyPeriodHours: number;
  /** `hmc transport`'s health and metrics listener, host:port (default 127.0.0.1:8026). */
  transportHttp: string;
  /**
   * How often `hmc serve` looks under the data-plane root for data planes rendered with a transport agent since
   * it started, and starts their agents (seconds; 0: only at start).
   */
  transportDiscoverSeconds: number;
}

/** Configuration from environment variables, with the embedded defaults. */
export function configFromEnv(env: NodeJS.ProcessEnv, overrides: Partial<Config> = {}): Config {
  const dataDir = resolve(overrides.dataDir ?? env.HMC_DATA_DIR ?? './data');
  const num = (v: string | undefined, d: number) => (v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : d);
  // an interval of 0 or less would be a refresh loop: keep the default
  const positive = (v: string | undefined, d: number) => (num(v, d) > 0 ? num(v, d) : d);
  return {
    dataDir,
    databaseUrl: overrides.databaseUrl ?? (env.HMC_DATABASE_URL || undefined),
    host: overrides.host ?? env.HMC_HOST ?? '127.0.0.1',
    port: overrides.port ?? num(env.HMC_PORT, 8080),
    filesRoot: resolve(overrides.filesRoot ?? env.HMC_FILES_ROOT ?? join(dataDir, 'homes')),
    mailstoreFilesRoot: resolve(overrides.mailstoreFilesRoot ?? env.HMC_MAILSTORE_FILES_ROOT ?? join(dataDir, 'mailstores')),
    workers: overrides.workers ?? num(env.HMC_WORKERS, 2),
    jobLeaseMs: overrides.jobLeaseMs ?? num(env.HMC_JOB_LEASE_MS, 30_000),
    bcryptCost: overrides.bcryptCost ?? num(env.HMC_BCRYPT_COST, 10),
    logLevel: overrides.logLevel ?? env.HMC_LOG_LEVEL ?? 'info',
    addressQuarantineDays: overrides.addressQuarantineDays ?? num(env.HMC_ADDRESS_QUARANTINE_DAYS, 30),
    mailboxRetentionDays: overrides.mailboxRetentionDays ?? num(env.HMC_MAILBOX_RETENTION_DAYS, 30),
    policyListen: overrides.policyListen ?? (env.HMC_POLICY_LISTEN || undefined),
    dataplaneRoot: overrides.dataplaneRoot ?? (env.HMC_DATAPLANE_ROOT ? resolve(env.HMC_DATAPLANE_ROOT) : undefined),
    domainCacheRefreshMinutes: overrides.domainCacheRefreshMinutes ?? positive(env.HMC_DOMAIN_CACHE_REFRESH_MINUTES, 60),
    transportSecret: overrides.transportSecret ?? (env.HMC_TRANSPORT_SECRET || undefined),
    autoReplyPeriodHours: overrides.autoReplyPeriodHours ?? positive(env.HMC_AUTO_REPLY_PERIOD_HOURS, 96),
    transportHttp: overrides.transportHttp ?? (env.HMC_TRANSPORT_HTTP || '127.0.0.1:8026'),
    transportDiscoverSeconds: overrides.transportDiscoverSeconds ?? Math.max(0, num(env.HMC_TRANSPORT_DISCOVER_SECONDS, 30)),
    domainCacheSnapshot: resolve(overrides.domainCacheSnapshot ?? env.HMC_DOMAIN_CACHE_SNAPSHOT ?? join(dataDir, 'domain-cache.json')),
  };
}

import { domainToASCII } from 'node:url';
import { pino, type Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db, Dialect } from '../store/db.js';
import { FULL_PAGE, loadAllDomains, loadDomains, type CachedDomain } from './domain-cache-source.js';
import { createPgChangeFeed, createSqliteChangeFeed, type ChangeFeed, type FeedChange } from './domain-cache-feed.js';
import { encodeSnapshot, readSnapshot, writeFileAtomic } from './domain-cache-snapshot.js';

export type { CachedDomain } from './domain-cache-source.js';

/** HMC's "Cache Refresh Time": the safety-net full refresh, whatever the change feed says. */
export const DEFAULT_REFRESH_MINUTES = 60;

export interface DomainCacheOptions {
  store: { db: Db; dialect: Dialect };
  /** PostgreSQL: the URL to LISTEN on (its own connection, held while the cache runs). Required on PostgreSQL. */
  databaseUrl?: string;
  /** Snapshot file (read when the database cannot be, written after refreshes); null: none. */
  snapshotPath?: string | null;
  /** Full refresh every this long (default 60 minutes). */
  refreshIntervalMs?: number;
  /** SQLite: how often the change log is polled (default 250 ms: a change is seen within ~0.25 s). */
  pollMs?: number;
  /** After a change, the snapshot is rewritten at most this often (default 60 s); after a full refresh at once. */
  snapshotMinIntervalMs?: number;
  /** How long `start` waits for the first full refresh before it serves the snapshot instead (default 10 s). */
  startTimeoutMs?: number;
  log?: Logger;
  /** Where the cache's Prometheus metrics are registered (default: a registry of its own, `cache.registry`). */
  registry?: Registry;
  /** Replace the change feed (default: LISTEN on PostgreSQL, the change log's poller on SQLite). */
  feed?: ChangeFeed;
}

/** Where the cache's contents came from. */
export type CacheSource = 'empty' | 'snapshot' | 'database';

export interface DomainCacheStatus {
  source: CacheSource;
  domains: number;
  /** When the contents were last known to match the database (epoch ms), null when never. */
  refreshedAt: number | null;
  feedConnected: boolean;
  /** Why the last refresh failed, while it keeps failing. */
  lastError: string | null;
  /** Why the snapshot could not be loaded, when it was needed and could not be. */
  snapshotError: string | null;
}

/** Longest wait between two refresh attempts while the database is unreachable. */
const MAX_RETRY_MS = 30_000;

/**
 * The lookup key of a domain as the cache stores it (A-label, lower case, no trailing dot); '' when it cannot
 * be a domain. ASCII needs only lower-casing (the hot path: what MTAs pass); anything else goes through IDNA
 * (UTS #46), as core/names.ts normalizeDomain does for what is stored.
 */
export function domainKey(input: string): string {
  let s = input.trim();
  if (s.endsWith('.')) s = s.slice(0, -1);
  return /^[\x21-\x7e]*$/.test(s) ? s.toLowerCase() : domainToASCII(s);
}

/** True when `s` is spelled as stored keys are (printable ASCII without upper case, no trailing dot): domainKey would not change it. */
function isCanonical(s: string): boolean {
  const n = s.length;
  if (n === 0 || s.charCodeAt(n - 1) === 46) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || (c >= 0x41 && c <= 0x5a)) return false;
  }
  return true;
}

/**
 * The transport agent's domain → organization map (HMC's SMTP Domain Cache Task): every accepted domain and
 * domain alias with its organization, reseller, liveness, type and alias target, held in memory so the mail path
 * never queries the database per message. A lookup is one Map get (0.1-1 µs at 100,000 domains on a 2-core VM,
 * bench/domain-cache.ts).
 *
 * Kept current three ways: the change feed (LISTEN/NOTIFY on PostgreSQL, the trigger-fed change log on SQLite;
 * transport/migrations.ts says why triggers) reloads just the organizations and resellers that changed; a full
 * rebuild every `refreshIntervalMs` is the safety net (and runs whenever the feed may have missed something);
 * while the database is unreachable the cache keeps what it has, retrying with backoff, and at start it falls back
 * to the snapshot file of its last good state.
 *
 * All refresh work runs one piece at a time (full rebuild or batch of scopes), and each applies its reads to the
 * maps synchronously after the last read: a lookup never sees half a change, and a failed read changes nothing.
 */
export class DomainCache {
  readonly registry: Registry;
  private byName = new Map<string, CachedDomain>();
  /** Each organization's entries, to replace them when it changes. */
  private byOrg = new Map<string, CachedDomain[]>();
  private source: CacheSource = 'empty';
  private refreshedAt: number | null = null;
  private hits = 0;
  private misses = 0;
  private lastError: string | null = null;
  private snapshotError: string | null = null;

  private readonly db: Db;
  private readonly fullPage: number;
  private readonly log: Logger;
  private readonly feed: ChangeFeed;
  private readonly snapshotPath: string | null;
  private readonly refreshIntervalMs: number;
  private readonly snapshotMinIntervalMs: number;
  private readonly startTimeoutMs: number;

  private running = false;
  private pendingAll = false;
  private pendingOrgs = new Set<string>();
  private pendingResellers = new Set<string>();
  private busy = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private intervalTimer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];
  private firstFull: ((ok: boolean) => void) | null = null;
  private listeners = new Set<(kind: 'full' | 'incremental' | 'snapshot') => void>();

  private snapshotDirty = false;
  private snapshotTimer: NodeJS.Timeout | null = null;
  private snapshotWriting: Promise<void> | null = null;
  private lastSnapshotAt = 0;

  private readonly m: {
    refreshes: Counter<'kind' | 'outcome'>;
    duration: Histogram<'kind'>;
    snapshotWrites: Counter<'outcome'>;
  };

  constructor(opts: DomainCacheOptions) {
    this.db = opts.store.db;
    this.fullPage = FULL_PAGE[opts.store.dialect];
    this.log = opts.log ?? pino({ level: 'silent' });
    this.snapshotPath = opts.snapshotPath ?? null;
    this.refreshIntervalMs = opts.refreshIntervalMs ?? DEFAULT_REFRESH_MINUTES * 60_000;
    // 100,000 domains are a 17 MB file, ~0.3 s of encoding and writing: not after every change
    this.snapshotMinIntervalMs = opts.snapshotMinIntervalMs ?? 60_000;
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    if (opts.feed) this.feed = opts.feed;
    else if (opts.store.dialect === 'postgres') {
      if (!opts.databaseUrl) throw new Error('the domain cache needs the database URL on PostgreSQL (to LISTEN)');
      this.feed = createPgChangeFeed(opts.databaseUrl, { log: this.log, connectTimeoutMs: Math.min(this.startTimeoutMs, 10_000) });
    } else {
      this.feed = createSqliteChangeFeed(this.db, { pollMs: opts.pollMs ?? 250, log: this.log });
    }
    this.registry = opts.registry ?? new Registry();
    this.m = this.registerMetrics(this.registry);
  }

  // ---------------- lookups ----------------

  /** The accepted domain or domain alias `domain` (any case, U-label or A-label, trailing dot or not), if any. */
  lookup(domain: string): CachedDomain | undefined {
    let d = this.byName.get(domain);
    // most misses are external domains already in canonical form: no second try for them
    if (d === undefined && !isCanonical(domain)) d = this.byName.get(domainKey(domain));
    if (d === undefined) this.misses++;
    else this.hits++;
    return d;
  }

  /** The domain entry (organization, reseller, liveness) of an address's domain; undefined for the null sender or an address of no accepted domain. */
  orgOfAddress(address: string): CachedDomain | undefined {
    const at = address.lastIndexOf('@');
    if (at < 0) {
      this.misses++;
      return undefined;
    }
    const end = address.endsWith('>') ? address.length - 1 : address.length;
    return this.lookup(address.slice(at + 1, end));
  }

  get size(): number {
    return this.byName.size;
  }

  status(): DomainCacheStatus {
    return { source: this.source, domains: this.byName.size, refreshedAt: this.refreshedAt, feedConnected: this.feed.connected, lastError: this.lastError, snapshotError: this.snapshotError };
  }

  /** Call `fn` after each change of the contents (a refresh applied, a snapshot loaded); returns the unsubscribe. */
  onUpdate(fn: (kind: 'full' | 'incremental' | 'snapshot') => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  // ---------------- life cycle ----------------

  /**
   * Follow the change feed, then load everything. When the database cannot be read (the feed cannot connect, or
   * the first full refresh fails or takes longer than `startTimeoutMs`), serve the snapshot and keep retrying.
   * Never throws for an unreachable database or an unusable snapshot: the cache starts empty and says so (log, status).
   */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const following = await this.feed.start((c) => this.onFeed(c));
    const first = new Promise<boolean>((resolve) => (this.firstFull = resolve));
    this.pendingAll = true;
    this.kick();
    // without the feed the database is down: serve the snapshot now rather than after a timeout
    if (!following) this.loadSnapshot();
    else {
      let timer: NodeJS.Timeout | undefined;
      const ok = await Promise.race([first, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.startTimeoutMs)))]);
      clearTimeout(timer);
      if (!ok) this.loadSnapshot();
    }
    this.intervalTimer = setInterval(() => this.onFeed({ all: true }), this.refreshIntervalMs);
  }

  /** Stop following and refreshing; a snapshot not yet written (changes within snapshotMinIntervalMs) is written. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.intervalTimer = this.retryTimer = null;
    await this.feed.stop();
    while (this.busy) await new Promise<void>((r) => this.idleWaiters.push(r));
    if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
    await this.snapshotWriting;
    if (this.snapshotDirty) await this.writeSnapshot();
  }

  /** Rebuild everything now (an operator's "refresh", tests); resolves when done, rejects when the database cannot be read. */
  async refresh(): Promise<void> {
    // asked for now: do not wait out a backoff
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onFeed({ all: true });
    await this.idle();
    if (this.lastError) throw new Error(`domain cache refresh failed: ${this.lastError}`);
  }

  /** Resolves when nothing is pending or running (a retry that waits for its backoff counts as idle). */
  idle(): Promise<void> {
    if (!this.busy && (!this.hasPending() || this.retryTimer || !this.running)) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  // ---------------- refreshing ----------------

  private onFeed(c: FeedChange): void {
    if (c.all) this.pendingAll = true;
    else {
      for (const id of c.orgIds) this.pendingOrgs.add(id);
      for (const id of c.resellerIds) this.pendingResellers.add(id);
    }
    this.kick();
  }

  private hasPending(): boolean {
    return this.pendingAll || this.pendingOrgs.size > 0 || this.pendingResellers.size > 0;
  }

  /** Run pending work unless running already or waiting out a backoff. setImmediate: a burst of notices becomes one batch. */
  private kick(): void {
    if (this.busy || this.retryTimer || !this.running) return;
    this.busy = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      while (this.running && this.hasPending()) {
        if (this.pendingAll) {
          // a full read that starts after a notice was received covers it: clear everything pending first
          this.pendingAll = false;
          this.pendingOrgs.clear();
          this.pendingResellers.clear();
          if (!(await this.attempt('full', () => this.fullRefresh()))) {
            this.pendingAll = true;
            break;
          }
        } else {
          const orgs = [...this.pendingOrgs];
          const resellers = [...this.pendingResellers];
          this.pendingOrgs.clear();
          this.pendingResellers.clear();
          if (!(await this.attempt('incremental', () => this.applyScopes(orgs, resellers)))) {
            for (const id of orgs) this.pendingOrgs.add(id);
            for (const id of resellers) this.pendingResellers.add(id);
            break;
          }
        }
      }
    } finally {
      this.busy = false;
      if (!this.hasPending() || this.retryTimer || !this.running) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      } else this.kick();
    }
  }

  private async attempt(kind: 'full' | 'incremental', fn: () => Promise<void>): Promise<boolean> {
    const end = this.m.duration.startTimer({ kind });
    try {
      await fn();
      end();
      this.m.refreshes.inc({ kind, outcome: 'ok' });
      if (this.failures > 0) this.log.info({ after: this.failures }, 'domain cache: database readable again');
      this.failures = 0;
      this.lastError = null;
      if (kind === 'full') this.resolveFirst(true);
      this.notify(kind);
      return true;
    } catch (err) {
      this.m.refreshes.inc({ kind, outcome: 'error' });
      this.failures++;
      this.lastError = err instanceof Error ? err.message : String(err);
      // one line when the trouble starts and then at 2, 4, 8, … failures, not one every retry
      if ((this.failures & (this.failures - 1)) === 0) {
        this.log.warn({ err, failures: this.failures, domains: this.byName.size, source: this.source }, 'domain cache: refresh failed; serving what it holds and retrying');
      }
      if (kind === 'full') this.resolveFirst(false);
      if (this.running) {
        const wait = Math.min(MAX_RETRY_MS, 250 * 2 ** Math.min(this.failures, 10));
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.kick();
        }, wait);
      }
      return false;
    }
  }

  private notify(kind: 'full' | 'incremental' | 'snapshot'): void {
    for (const l of this.listeners) {
      try {
        l(kind);
      } catch (err) {
        this.log.error({ err }, 'domain cache: an update listener failed');
      }
    }
  }

  private resolveFirst(ok: boolean): void {
    this.firstFull?.(ok);
    this.firstFull = null;
  }

  /** Read every accepted domain and replace the maps at once. */
  private async fullRefresh(): Promise<void> {
    const startedAt = Date.now();
    const rows = await loadAllDomains(this.db, this.fullPage);
    this.install(rows);
    this.source = 'database';
    this.refreshedAt = startedAt;
    this.snapshotError = null;
    this.scheduleSnapshot(true);
  }

  private install(rows: readonly CachedDomain[]): void {
    const byName = new Map<string, CachedDomain>();
    const byOrg = new Map<string, CachedDomain[]>();
    for (const d of rows) {
      byName.set(d.name, d);
      const list = byOrg.get(d.orgId);
      if (list) list.push(d);
      else byOrg.set(d.orgId, [d]);
    }
    this.byName = byName;
    this.byOrg = byOrg;
  }

  /**
   * Replace the entries of some organizations (and of every organization of some resellers) with what the database
   * holds now. All reads first, then the maps change in one synchronous step.
   */
  private async applyScopes(orgIds: readonly string[], resellerIds: readonly string[]): Promise<void> {
    const startedAt = Date.now();
    const fetched = [...(await loadDomains(this.db, { orgIds })), ...(await loadDomains(this.db, { resellerIds }))];
    // replaced: the organizations asked for, those the cache has under the resellers asked for, and whatever was read
    const replace = new Set<string>(orgIds);
    if (resellerIds.length > 0) {
      const rs = new Set(resellerIds);
      for (const [orgId, list] of this.byOrg) if (rs.has(list[0]!.resellerId)) replace.add(orgId);
    }
    const next = new Map<string, CachedDomain[]>();
    for (const d of fetched) {
      replace.add(d.orgId);
      const list = next.get(d.orgId);
      if (list) list.push(d);
      else next.set(d.orgId, [d]);
    }
    for (const orgId of replace) {
      // a name may have moved to another organization already (removed here, accepted there): leave that one
      for (const d of this.byOrg.get(orgId) ?? []) if (this.byName.get(d.name)?.orgId === orgId) this.byName.delete(d.name);
      const list = next.get(orgId);
      if (list) this.byOrg.set(orgId, list);
      else this.byOrg.delete(orgId);
    }
    for (const d of fetched) this.byName.set(d.name, d);
    if (this.source === 'database') this.refreshedAt = startedAt;
    // only a full refresh makes a snapshot's contents the database's (incremental changes on top of a snapshot are not)
    if (this.source === 'database') this.scheduleSnapshot(false);
  }

  // ---------------- snapshot ----------------

  /** Serve the snapshot, unless the database answered meanwhile. An unusable one leaves the cache empty, with a warning. */
  private loadSnapshot(): void {
    if (this.source !== 'empty') return;
    if (!this.snapshotPath) {
      this.log.warn('domain cache: the database cannot be read and no snapshot is configured; every lookup misses until it can');
      return;
    }
    try {
      const s = readSnapshot(this.snapshotPath);
      if (!s) {
        this.snapshotError = 'no snapshot file';
        this.log.warn({ path: this.snapshotPath }, 'domain cache: the database cannot be read and there is no snapshot yet; every lookup misses until it can');
        return;
      }
      this.install(s.domains);
      this.source = 'snapshot';
      this.refreshedAt = s.refreshedAt;
      this.log.warn({ path: this.snapshotPath, domains: s.domains.length, refreshedAt: new Date(s.refreshedAt).toISOString() },
        'domain cache: the database cannot be read; serving the snapshot until it can');
      this.notify('snapshot');
    } catch (err) {
      this.snapshotError = err instanceof Error ? err.message : String(err);
      this.log.warn({ err, path: this.snapshotPath }, 'domain cache: the snapshot is unusable and the database cannot be read; every lookup misses until it can');
    }
  }

  private scheduleSnapshot(now: boolean): void {
    if (!this.snapshotPath) return;
    this.snapshotDirty = true;
    if (this.snapshotTimer || this.snapshotWriting) return; // the write in progress looks at snapshotDirty when it ends
    const wait = now ? 0 : Math.max(0, this.lastSnapshotAt + this.snapshotMinIntervalMs - Date.now());
    this.snapshotTimer = setTimeout(() => {
      this.snapshotTimer = null;
      void this.writeSnapshot();
    }, wait);
  }

  private async writeSnapshot(): Promise<void> {
    if (!this.snapshotPath || !this.snapshotDirty || this.refreshedAt === null) return;
    this.snapshotDirty = false;
    // entries are immutable: the array taken now is a consistent state even if refreshes run while it is encoded
    const domains = [...this.byName.values()];
    this.snapshotWriting = encodeSnapshot({ refreshedAt: this.refreshedAt, domains }).then((text) => writeFileAtomic(this.snapshotPath!, text)).then(
      () => void this.m.snapshotWrites.inc({ outcome: 'ok' }),
      (err) => {
        this.m.snapshotWrites.inc({ outcome: 'error' });
        this.log.warn({ err, path: this.snapshotPath }, 'domain cache: cannot write the snapshot');
      },
    );
    await this.snapshotWriting;
    this.snapshotWriting = null;
    this.lastSnapshotAt = Date.now();
    if (this.snapshotDirty && this.running) this.scheduleSnapshot(false);
  }

  // ---------------- metrics ----------------

  private registerMetrics(registry: Registry) {
    const self = this;
    const registers = [registry];
    new Gauge({ name: 'hmc_domain_cache_domains', help: 'Accepted domains and domain aliases in the transport domain cache', registers,
      collect() { this.set(self.byName.size); } });
    new Gauge({ name: 'hmc_domain_cache_age_seconds', help: 'Seconds since the domain cache last matched the database (full or incremental refresh; a loaded snapshot keeps its own time); +Inf before any', registers,
      collect() { this.set(self.refreshedAt === null ? Infinity : (Date.now() - self.refreshedAt) / 1000); } });
    new Gauge({ name: 'hmc_domain_cache_feed_connected', help: '1 while the change feed (LISTEN on PostgreSQL, the change log on SQLite) is followed', registers,
      collect() { this.set(self.feed.connected ? 1 : 0); } });
    new Gauge({ name: 'hmc_domain_cache_serving_snapshot', help: '1 while the domain cache serves its snapshot file (the database has not been read since start)', registers,
      collect() { this.set(self.source === 'snapshot' ? 1 : 0); } });
    let hitsSeen = 0;
    let missesSeen = 0;
    // lookups count into plain numbers (a labelled inc() would cost more than the lookup); scrapes add the difference
    new Counter({ name: 'hmc_domain_cache_lookups_total', help: 'Domain cache lookups by result (hit, miss)', labelNames: ['result'], registers,
      collect() {
        this.inc({ result: 'hit' }, self.hits - hitsSeen);
        this.inc({ result: 'miss' }, self.misses - missesSeen);
        hitsSeen = self.hits;
        missesSeen = self.misses;
      } });
    return {
      refreshes: new Counter({ name: 'hmc_domain_cache_refreshes_total', help: 'Domain cache refreshes by kind (full, incremental) and outcome (ok, error)', labelNames: ['kind', 'outcome'], registers }),
      duration: new Histogram({ name: 'hmc_domain_cache_refresh_duration_seconds', help: 'Domain cache refresh time (reads and rebuild)', labelNames: ['kind'], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers }),
      snapshotWrites: new Counter({ name: 'hmc_domain_cache_snapshot_writes_total', help: 'Domain cache snapshot writes by outcome (ok, error)', labelNames: ['outcome'], registers }),
    };
  }
}

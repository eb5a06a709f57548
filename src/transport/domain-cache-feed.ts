import type pg from 'pg';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import { loadPg, type Db } from '../store/db.js';
import { DOMAIN_CACHE_CHANNEL } from './migrations.js';

/**
 * How the domain cache hears of changes (the triggers of migration 0017, transport/migrations.ts): a scope to
 * reload (organizations, resellers), or `all` when the feed may have missed something (it connected late, lost its
 * connection, or fell too far behind) and only a full rebuild is safe.
 */
export type FeedChange = { all: true } | { all?: false; orgIds: string[]; resellerIds: string[] };

/** A source of change notices. Contract: every change committed after `start` resolved true is reported. */
export interface ChangeFeed {
  /**
   * Begin following. Resolves true once every later change will be reported, false when the database cannot be
   * reached now: the feed keeps trying and, once it follows, reports `all` (what happened meanwhile is unknown).
   */
  start(onChange: (c: FeedChange) => void): Promise<boolean>;
  stop(): Promise<void>;
  /** The feed is following now (a metric and a health signal). */
  readonly connected: boolean;
}

/** Longest wait between two attempts to reach a database that is down. */
const MAX_BACKOFF_MS = 30_000;
const backoff = (failures: number, baseMs: number) => Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.min(failures, 16));

/** `o:<org id>` / `r:<reseller id>` (the triggers' payloads and log rows) as a change. */
function parseScope(scope: string, id: string): FeedChange {
  if (scope === 'o') return { orgIds: [id], resellerIds: [] };
  if (scope === 'r') return { orgIds: [], resellerIds: [id] };
  return { all: true };
}

/** Rows read per poll; a backlog this long is cheaper to rebuild in full than to replay. */
const POLL_BATCH = 2_000;

/**
 * SQLite: poll the change log `transport_domain_changes` (seq > cursor, a primary-key range that finds nothing in
 * the usual case: a few microseconds) every `pollMs`. One writer commits log rows in seq order, so a cursor never
 * skips a row. The log is durable: a poll that fails (database locked away, file gone) resumes at its cursor. A
 * cursor whose next row was trimmed away (more than DOMAIN_CHANGES_KEPT changes behind) reports `all`.
 */
export function createSqliteChangeFeed(db: Db, opts: { pollMs: number; log: Logger }): ChangeFeed {
  let cursor: number | null = null;
  let onChange: (c: FeedChange) => void = () => {};
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let connected = false;
  let failures = 0;
  let startedLate = false;

  const maxSeq = async () => Number((await sql<{ m: number | null }>`SELECT max(seq) AS m FROM transport_domain_changes`.execute(db)).rows[0]?.m ?? 0);

  async function poll(): Promise<void> {
    if (cursor === null) {
      cursor = await maxSeq();
      // following only from now: whatever changed before is known only to a full rebuild
      if (startedLate) onChange({ all: true });
      return;
    }
    const rows = await db.selectFrom('transport_domain_changes').select(['seq', 'scope', 'id'])
      .where('seq', '>', cursor).orderBy('seq').limit(POLL_BATCH).execute();
    if (rows.length === 0) return;
    const first = Number(rows[0]!.seq);
    if (first !== cursor + 1 || rows.length === POLL_BATCH) {
      cursor = rows.length === POLL_BATCH ? await maxSeq() : Number(rows.at(-1)!.seq);
      onChange({ all: true });
      return;
    }
    const orgIds = new Set<string>();
    const resellerIds = new Set<string>();
    for (const r of rows) (r.scope === 'r' ? resellerIds : orgIds).add(r.id as string);
    cursor = Number(rows.at(-1)!.seq);
    onChange({ orgIds: [...orgIds], resellerIds: [...resellerIds] });
  }

  async function tick(): Promise<void> {
    timer = null;
    if (stopped) return;
    try {
      await poll();
      if (!connected) opts.log.info('domain cache: change log readable again');
      connected = true;
      failures = 0;
    } catch (err) {
      if (connected || failures === 0) opts.log.warn({ err }, 'domain cache: cannot read the change log; retrying');
      connected = false;
      failures++;
    }
    if (!stopped) timer = setTimeout(tick, failures === 0 ? opts.pollMs : backoff(failures, opts.pollMs));
  }

  return {
    get connected() {
      return connected;
    },
    async start(cb) {
      onChange = cb;
      try {
        cursor = await maxSeq();
        connected = true;
      } catch (err) {
        opts.log.warn({ err }, 'domain cache: cannot read the change log; retrying');
        startedLate = true;
        failures = 1;
      }
      timer = setTimeout(tick, connected ? opts.pollMs : backoff(failures, opts.pollMs));
      return connected;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}

/**
 * PostgreSQL: LISTEN on a connection of its own (a pooled connection cannot hold a LISTEN). Notifications arrive
 * after the commit that sent them, so a reload on receipt reads the change. Notifications sent while the connection
 * was down are lost: every (re)connection reports `all`. A connection that dies silently (a half-open TCP
 * connection after a network cut) is found by TCP keepalive and by a `SELECT 1` every `pingMs`.
 */
export function createPgChangeFeed(url: string, opts: { log: Logger; pingMs?: number; connectTimeoutMs?: number }): ChangeFeed {
  const pingMs = opts.pingMs ?? 30_000;
  let client: pg.Client | null = null;
  let onChange: (c: FeedChange) => void = () => {};
  let stopped = false;
  let connected = false;
  let failures = 0;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let pingTimer: NodeJS.Timeout | null = null;

  async function connect(): Promise<void> {
    const c = new (loadPg().Client)({ connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000, query_timeout: 10_000, application_name: 'hmc domain cache' });
    // errors surface as 'error' events too (a server restart, a terminated backend): never an unhandled one
    c.on('error', (err) => lost(c, err));
    c.on('end', () => lost(c, null));
    c.on('notification', (n) => {
      // one arriving before this client is current is covered by the full refresh that follows every connection
      if (c !== client || n.channel !== DOMAIN_CACHE_CHANNEL) return;
      const p = n.payload ?? '';
      onChange(parseScope(p.slice(0, 1), p.slice(2)));
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${DOMAIN_CACHE_CHANNEL}`);
    } catch (e) {
      c.removeAllListeners('end');
      await c.end().catch(() => {});
      throw e;
    }
    if (stopped) {
      await c.end().catch(() => {});
      return;
    }
    client = c;
    connected = true;
    failures = 0;
  }

  /** Forget a connection that failed (once) and try again after a backoff. */
  function lost(c: pg.Client, err: unknown): void {
    if (c !== client) return;
    client = null;
    connected = false;
    void c.end().catch(() => {});
    if (stopped) return;
    opts.log.warn({ err }, 'domain cache: LISTEN connection lost; reconnecting (a full refresh follows)');
    scheduleReconnect();
  }

  function scheduleReconnect(): void {
    if (stopped || reconnectTimer) return;
    reconnectTimer = setTimeout(async () => {
      reconnectTimer = null;
      try {
        await connect();
        if (stopped) return;
        opts.log.info('domain cache: LISTEN connection back');
        onChange({ all: true });
      } catch (err) {
        if (failures === 0) opts.log.warn({ err }, 'domain cache: cannot LISTEN; retrying');
        failures++;
        scheduleReconnect();
      }
    }, backoff(failures, 500));
  }

  function schedulePing(): void {
    pingTimer = setTimeout(async () => {
      const c = client;
      if (c && !stopped) await c.query('SELECT 1').catch((err) => lost(c, err));
      if (!stopped) schedulePing();
    }, pingMs);
    pingTimer.unref();
  }

  return {
    get connected() {
      return connected;
    },
    async start(cb) {
      onChange = cb;
      schedulePing();
      try {
        await connect();
        return true;
      } catch (err) {
        opts.log.warn({ err }, 'domain cache: cannot LISTEN; retrying');
        failures = 1;
        scheduleReconnect();
        return false;
      }
    },
    async stop() {
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      if (pingTimer) clearTimeout(pingTimer);
      const c = client;
      client = null;
      connected = false;
      if (c) await c.end().catch(() => {});
    },
  };
}

import { CompiledQuery, sql } from 'kysely';
import type { Db, Store } from '../store/db.js';

/** Runs a unit of work in a transaction. All engine writes go through one of these. */
export interface TxRunner {
  run<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** Resolves when everything queued so far has committed or failed. */
  drain(): Promise<void>;
}

/** PostgreSQL: one transaction per unit; the server groups concurrent commits' WAL flushes itself. */
export function createPgTxRunner(db: Db): TxRunner {
  return {
    run: (fn) => db.transaction().execute(fn),
    drain: async () => {},
  };
}

interface Pending {
  fn: (tx: Db) => Promise<unknown>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** At most this many event-loop turns spent gathering units before a group commits. */
const GATHER_TURNS = 8;

const SAVEPOINT = CompiledQuery.raw('savepoint "unit"');
const RELEASE = CompiledQuery.raw('release "unit"');
const ROLLBACK_TO = CompiledQuery.raw('rollback to "unit"');

/**
 * SQLite group commit. SQLite has one writer and each durable COMMIT costs an fsync, so units that arrive
 * while a commit is in flight are gathered and committed together: each runs inside its own SAVEPOINT (a
 * failing unit rolls back alone), then one COMMIT and one sync of the WAL (`sync`, the store's syncCommits,
 * on the thread pool: the event loop serves requests meanwhile) make the whole group durable. Nobody is told
 * "done" before that sync returns, so an acknowledged unit survives a power cut.
 */
export function createSqliteTxRunner(db: Db, opts: { maxGroup?: number; sync?: () => Promise<void> } = {}): TxRunner {
  const maxGroup = opts.maxGroup ?? 256;
  let queue: Pending[] = [];
  let flushing: Promise<void> | null = null;
  /** Groups committed whose sync has not returned yet (their units not yet told). */
  const syncing = new Set<Promise<void>>();

  async function flushOnce(): Promise<void> {
    const group = queue.splice(0, maxGroup);
    if (group.length === 0) return;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    let trx;
    try {
      trx = await db.startTransaction().execute();
    } catch (e) {
      for (const p of group) p.reject(e);
      return;
    }
    try {
      for (const p of group) {
        if (group.length === 1) {
          try {
            outcomes.push({ ok: true, value: await p.fn(trx) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
          continue;
        }
        // Plain statements on the one transaction object rather than Kysely's savepoint() (a new
        // transaction object per unit, ~20 us): units run one after another, so the names never nest.
        await trx.executeQuery(SAVEPOINT);
        try {
          const value = await p.fn(trx);
          await trx.executeQuery(RELEASE);
          outcomes.push({ ok: true, value });
        } catch (error) {
          await trx.executeQuery(ROLLBACK_TO);
          await trx.executeQuery(RELEASE);
          outcomes.push({ ok: false, error });
        }
      }
      if (group.length === 1 && outcomes[0] && !outcomes[0].ok) await trx.rollback().execute();
      else await trx.commit().execute();
    } catch (e) {
      try {
        await trx.rollback().execute();
      } catch {
        /* the commit failure is what matters */
      }
      for (const p of group) p.reject(e);
      return;
    }
    const settle = () => group.forEach((p, i) => {
      const o = outcomes[i]!;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
    if (!opts.sync) return settle();
    // the store commits without syncing (synchronous=NORMAL): the WAL's sync runs on the thread pool and
    // nobody hears "done" before it returned. The next group runs meanwhile (its own sync starts after its
    // commit, so it covers both); a sync that fails fails its group, whose commit may not be durable.
    const synced = opts.sync().then(settle, (e) => group.forEach((p) => p.reject(e)));
    syncing.add(synced);
    void synced.finally(() => syncing.delete(synced));
  }

  /**
   * Let more units join before the group starts: turn the event loop (so requests that arrived meanwhile
   * are read and submit their units) for as long as each turn adds units, up to GATHER_TURNS turns. One
   * idle turn costs microseconds; a group waits for its fsync, and that fsync costs about the same for 5
   * units as for 16. Starting at the first turn closed a group
   * before the other clients' requests had been read (16 HTTP clients: groups of ~8, two fsyncs a round);
   * with this, a group of all 16 is the most common size in the bench.
   */
  async function gather(): Promise<void> {
    let seen = -1;
    for (let turn = 0; turn < GATHER_TURNS && queue.length !== seen && queue.length < maxGroup; turn++) {
      seen = queue.length;
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  function schedule(): void {
    if (flushing) return;
    flushing = (async () => {
      await gather();
      while (queue.length > 0) await flushOnce();
    })().finally(() => {
      flushing = null;
      if (queue.length > 0) schedule();
    });
  }

  return {
    run<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
        schedule();
      });
    },
    async drain() {
      while (flushing || syncing.size > 0) {
        if (flushing) await flushing;
        await Promise.all(syncing);
      }
    },
  };
}

export function createTxRunner(store: Store): TxRunner {
  return store.dialect === 'sqlite' ? createSqliteTxRunner(store.db, { sync: store.syncCommits }) : createPgTxRunner(store.db);
}

let savepointSeq = 0;
/** Run `fn` inside a SAVEPOINT of the open transaction `tx`: on error only its own writes roll back. */
export async function withSavepoint<T>(tx: Db, fn: () => Promise<T>): Promise<T> {
  const name = `sp_${++savepointSeq}`;
  await sql.raw(`SAVEPOINT ${name}`).execute(tx);
  try {
    const v = await fn();
    await sql.raw(`RELEASE SAVEPOINT ${name}`).execute(tx);
    return v;
  } catch (e) {
    await sql.raw(`ROLLBACK TO SAVEPOINT ${name}`).execute(tx);
    await sql.raw(`RELEASE SAVEPOINT ${name}`).execute(tx);
    throw e;
  }
}

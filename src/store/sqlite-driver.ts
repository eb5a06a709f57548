import type SQLite from 'better-sqlite3';
import { SqliteDialect, type CompiledQuery, type DatabaseConnection, type Driver, type QueryResult } from 'kysely';

/**
 * Kysely's SQLite driver over two connections to one WAL database: a writer and a reader.
 *
 * Kysely's own driver has one connection behind a mutex, so every query waits for whoever holds it,
 * and the group-commit runner (engine/tx-runner.ts) holds it from BEGIN to COMMIT of a whole group.
 * An API request's token lookup and scope check, and a job's read of its user, each waited for a group
 * of other requests to commit, sometimes twice in a row. In WAL mode a reader sees the last committed
 * state and never waits for the writer, so here a read outside a transaction goes to the reader at
 * once: the same committed-data view a PostgreSQL pool gives. Transactions, and writes outside one,
 * use the writer under the mutex, as before. Both connections run on this thread (better-sqlite3 is
 * synchronous), so statements never interleave.
 */
export function splitSqliteDialect(writer: Statements, reader: Statements): SqliteDialect {
  return new (class extends SqliteDialect {
    override createDriver(): Driver {
      return new SplitDriver(writer, reader);
    }
  })({ database: writer });
}

/** A connection with a prepared-statement cache (see db.ts). */
export interface Statements {
  prepare(sql: string): SQLite.Statement;
  close(): void;
  readonly inTransaction: boolean;
}

class SplitDriver implements Driver {
  private locked: Promise<void> | null = null;
  private unlockFn: (() => void) | null = null;

  constructor(readonly writer: Statements, readonly reader: Statements) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new SplitConnection(this);
  }

  /** The writer is held from BEGIN to COMMIT/ROLLBACK, and around a write outside a transaction. */
  async lock(): Promise<void> {
    while (this.locked) await this.locked;
    this.locked = new Promise((resolve) => (this.unlockFn = resolve));
  }

  unlock(): void {
    const resolve = this.unlockFn;
    this.locked = null;
    this.unlockFn = null;
    resolve?.();
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await this.lock();
    try {
      this.writer.prepare('begin').run();
    } catch (e) {
      this.unlock();
      throw e;
    }
    (connection as SplitConnection).inTransaction = true;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    // a failed COMMIT leaves the transaction open: Kysely then calls rollbackTransaction, which unlocks
    this.writer.prepare('commit').run();
    (connection as SplitConnection).inTransaction = false;
    this.unlock();
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      // SQLite may have rolled back already (some errors end the transaction themselves)
      if (this.writer.inTransaction) this.writer.prepare('rollback').run();
    } finally {
      (connection as SplitConnection).inTransaction = false;
      this.unlock();
    }
  }

  async savepoint(_c: DatabaseConnection, name: string): Promise<void> {
    this.writer.prepare(`savepoint ${quote(name)}`).run();
  }

  async rollbackToSavepoint(_c: DatabaseConnection, name: string): Promise<void> {
    this.writer.prepare(`rollback to ${quote(name)}`).run();
  }

  async releaseSavepoint(_c: DatabaseConnection, name: string): Promise<void> {
    this.writer.prepare(`release ${quote(name)}`).run();
  }

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {
    this.reader.close();
    this.writer.close();
  }
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

class SplitConnection implements DatabaseConnection {
  inTransaction = false;

  constructor(private readonly driver: SplitDriver) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const { writer, reader } = this.driver;
    if (this.inTransaction) return run<R>(writer.prepare(query.sql), query.parameters);
    const st = writer.prepare(query.sql);
    // `reader` (returns rows) as well as `readonly`: BEGIN, COMMIT and SAVEPOINT count as read-only too
    if (st.reader && st.readonly) return run<R>(reader.prepare(query.sql), query.parameters);
    await this.driver.lock();
    try {
      return run<R>(st, query.parameters);
    } finally {
      this.driver.unlock();
    }
  }

  async *streamQuery<R>(query: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const { writer, reader } = this.driver;
    let st = writer.prepare(query.sql);
    if (!st.reader) throw new Error('Sqlite driver only supports streaming of select queries');
    if (this.inTransaction) {
      for (const row of st.iterate(query.parameters)) yield { rows: [row as R] };
    } else if (st.readonly) {
      for (const row of reader.prepare(query.sql).iterate(query.parameters)) yield { rows: [row as R] };
    } else {
      await this.driver.lock();
      try {
        for (const row of st.iterate(query.parameters)) yield { rows: [row as R] };
      } finally {
        this.driver.unlock();
      }
    }
  }
}

function run<R>(st: SQLite.Statement, parameters: readonly unknown[]): QueryResult<R> {
  if (st.reader) return { rows: st.all(parameters) as R[] };
  const { changes, lastInsertRowid } = st.run(parameters);
  return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
}

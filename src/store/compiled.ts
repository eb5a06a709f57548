import { CompiledQuery, type QueryResult } from 'kysely';
import type { Db, Dialect } from './db.js';

/**
 * Hot statements written once as SQL text instead of built per call. Kysely's builder parses,
 * freezes and compiles a query every time it runs it: 7-20 us a statement on this machine, as much
 * as SQLite itself takes to run a single-row INSERT, and a request or a job runs 5-8 of them.
 * Text uses `?` placeholders; PostgreSQL gets `$1, $2, ...` (the text must hold no other `?`).
 */
const pgTexts = new Map<string, string>();

const dialects = new WeakMap<Db, Dialect>();

/**
 * The dialect behind a Kysely instance or transaction, from how it writes a placeholder: asked once
 * per object (a few us), so the hot paths need no extra parameter. A SQLite group commit shares one
 * transaction object among its units.
 */
export function dialectOf(db: Db): Dialect {
  let d = dialects.get(db);
  if (d === undefined) {
    d = db.selectFrom('t').select('c').where('c', '=', 0).compile().sql.endsWith('?') ? 'sqlite' : 'postgres';
    dialects.set(db, d);
  }
  return d;
}

function textFor(dialect: Dialect, text: string): string {
  if (dialect === 'sqlite') return text;
  let pg = pgTexts.get(text);
  if (pg === undefined) {
    let n = 0;
    pg = text.replace(/\?/g, () => `$${++n}`);
    pgTexts.set(text, pg);
  }
  return pg;
}

/** Run `text` (with `?` placeholders) with `params` on `db` (a transaction or not). */
export function runSql<R = Record<string, any>>(db: Db, text: string, params: readonly unknown[]): Promise<QueryResult<R>> {
  return db.executeQuery<R>(CompiledQuery.raw(textFor(dialectOf(db), text), params as unknown[]));
}

/** Per table, the column lists seen so far and their INSERT text (a table is written with one or two shapes). */
const insertTexts = new Map<string, Array<{ cols: string[]; text: string }>>();

/**
 * INSERT one row. As with Kysely's `values()`, a column whose value is `undefined` is left out
 * (so it takes its default).
 */
export async function insertRow(db: Db, table: string, row: Record<string, unknown>): Promise<void> {
  const cols: string[] = [];
  const params: unknown[] = [];
  for (const k in row) {
    const v = row[k];
    if (v === undefined) continue;
    cols.push(k);
    params.push(v);
  }
  let shapes = insertTexts.get(table);
  if (!shapes) insertTexts.set(table, (shapes = []));
  let shape = shapes.find((s) => s.cols.length === cols.length && s.cols.every((c, i) => c === cols[i]));
  if (!shape) {
    shape = { cols, text: `insert into "${table}" (${cols.map((c) => `"${c}"`).join(', ')}) values (${cols.map(() => '?').join(', ')})` };
    shapes.push(shape);
  }
  await runSql(db, shape.text, params);
}

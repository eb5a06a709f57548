import type { SelectQueryBuilder } from 'kysely';
import { Errors } from '../core/errors.js';

/** Keyset pagination: `?limit=&cursor=`; answers `{ items, next }`. Cursors are opaque to clients. */
export interface PageParams {
  limit?: number;
  cursor?: string;
  /** `desc`: newest first (logs); default oldest first. */
  order?: 'asc' | 'desc';
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 1000;

export function encodeCursor(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { after?: unknown };
    if (typeof v.after === 'string' && v.after.length > 0 && v.after.length <= 64) return v.after;
  } catch {
    /* fall through */
  }
  throw Errors.invalidCursor('cursor is not one this API returned');
}

/**
 * One page ordered by `idColumn` (ids are time-ordered ULIDs, so this is creation order). Fetches
 * limit+1 rows to know whether there is a next page; with an index on (scope column, id) a page
 * costs the same at row 100,000 as at row 1.
 */
export async function page(
  qb: SelectQueryBuilder<any, any, any>,
  idColumn: string,
  params: PageParams,
): Promise<Page<any>> {
  const limit = Math.min(Math.max(1, params.limit ?? DEFAULT_LIMIT), MAX_LIMIT);
  const desc = params.order === 'desc';
  let q = qb;
  if (params.cursor) q = q.where(idColumn, desc ? '<' : '>', decodeCursor(params.cursor));
  const rows = await q.orderBy(idColumn, desc ? 'desc' : 'asc').limit(limit + 1).execute();
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  return { items, next: more ? encodeCursor(items[items.length - 1]!.id) : null };
}

/** Map a page's items. */
export function mapPage<A, B>(p: Page<A>, f: (a: A) => B): Page<B> {
  return { items: p.items.map(f), next: p.next };
}

import type { SelectQueryBuilder } from 'kysely';
import { roleLevel, type Principal } from '../core/tenancy.js';

type Q = SelectQueryBuilder<any, any, any>;

/**
 * The one tenancy filter: rows carrying reseller_id and org_id columns, narrowed to the principal's
 * node. Provider: everything; reseller: its reseller_id; organization: its org_id; user: what `user`
 * narrows to (each table knows what a user may see of it, often nothing).
 */
export function scopeRows<T extends Q>(q: T, p: Principal, user: (q: T) => T, prefix = ''): T {
  const col = (c: string) => (prefix ? `${prefix}.${c}` : c);
  switch (roleLevel(p.role)) {
    case 'provider':
      return q;
    case 'reseller':
      return q.where(col('reseller_id'), '=', p.resellerId) as T;
    case 'organization':
      return q.where(col('org_id'), '=', p.orgId) as T;
    case 'user':
      return user(q);
  }
}

/** A filter that matches no row. */
export const noRows = <T extends Q>(q: T): T => q.where('id', '=', '') as T;

import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { inScope } from '../directory/repo.js';
import { Id } from '../engine/http.js';
import type { Db } from '../store/db.js';

/**
 * Send-as and send-on-behalf grants (table send_grants): a mailbox or a mail-enabled group lets a user of
 * the SAME organization send as it, or on its behalf. Postfix's smtpd_sender_login_maps is built from these
 * rows by the data plane; they never cross organizations.
 */

/** Persisted right names. */
export const SEND_RIGHTS = ['send_as', 'send_on_behalf'] as const;
export type SendRight = (typeof SEND_RIGHTS)[number];
export const SendRightSchema = Type.Union(SEND_RIGHTS.map((r) => Type.Literal(r)));
/** The object of a grant: a mailbox or a group. */
export const GrantObjectId = Type.Union([Id('mbx'), Id('grp')]);

export const GrantView = Type.Object({
  objectId: Type.String(), objectKind: Type.String(), userId: Type.String(), right: Type.String(), createdAt: Type.Union([Type.String(), Type.Null()]),
});
export const TrusteeView = Type.Object({
  userId: Type.String(), login: Type.String(), displayName: Type.String(), createdAt: Type.String({ format: 'date-time' }),
});

/* eslint-disable @typescript-eslint/no-explicit-any */
export const toTrustee = (r: any) => ({ userId: r.id, login: r.login, displayName: r.display_name, createdAt: iso(r.created_at)! });

/**
 * A mailbox of `orgId` as the principal may see it: the organization's admins and helpdesk (and above)
 * see every mailbox of it, a user-role principal only the mailbox whose user it is (the rule of the
 * mailbox visibility check). Anything else is 404.
 */
export async function visibleMailbox(db: Db, p: Principal, orgId: string, mailboxId: string): Promise<any> {
  let q = inScope(db.selectFrom('mailboxes').selectAll(), p).where('org_id', '=', orgId).where('id', '=', mailboxId);
  if (roleLevel(p.role) === 'user') q = q.where('user_id', '=', p.userId);
  const m = await q.executeTakeFirst();
  if (!m) throw Errors.notFound(`mailbox ${mailboxId} not found`);
  return m;
}

/** Trustees holding `right` on an object, one page keyed by user id. */
export function trusteesQuery(db: Db, objectId: string, right: SendRight): any {
  return db
    .selectFrom('send_grants as sg')
    .innerJoin('users as u', 'u.id', 'sg.trustee_user_id')
    .select(['u.id as id', 'u.login as login', 'u.display_name as display_name', 'sg.created_at as created_at'])
    .where('sg.object_id', '=', objectId)
    .where('sg.right_name', '=', right);
}

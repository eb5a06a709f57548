import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { iso } from '../core/time.js';
import { liveOrg } from '../directory/procedures.js';
import { Id } from '../engine/http.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import type { Db } from '../store/db.js';
import { visibleMailbox } from './grants-model.js';
import { activeOrgUser } from './groups-model.js';

/**
 * Full access to a mailbox (Exchange's Full Access permission; table mailbox_access): a user of the SAME
 * organization may open the mailbox (any kind: shared, room, equipment or another user's) and everything in
 * it. The data plane makes it real in Dovecot (dataplane/acl.ts): the trustee sees the mailbox under
 * `Shared/<its name>/` over IMAP. Both ends must be in the organization named by the path: the mailbox (an
 * active one) and the trustee (an active user); a user of another organization is refused with
 * recipient_not_in_organization (and is 404 on the HTTP route already, by the user visibility check, for
 * anyone scoped below the provider).
 *
 * Every grant and revoke enqueues FULL_ACCESS_JOBS.mailbox, which converges the mailbox's Dovecot ACL with
 * these rows, in the organization's job queue.
 */

/** Persisted procedure ids (never rename). */
export const FULL_ACCESS_PROCS = {
  grantFullAccess: 'mail.grant_full_access',
  revokeFullAccess: 'mail.revoke_full_access',
} as const;

/** Persisted job kinds (never rename), handled by the data plane (dataplane/acl.ts). */
export const FULL_ACCESS_JOBS = {
  /** payload { mailboxId }: that mailbox's ACL = its trustees. */
  mailbox: 'mail.converge_full_access',
  /** payload { orgId }: every mailbox of the organization that has trustees or still carries an ACL. */
  organization: 'mail.converge_org_full_access',
} as const;

export const FullAccessView = Type.Object({
  mailboxId: Type.String(), userId: Type.String(), createdAt: Type.String({ format: 'date-time' }),
});

const strict = { additionalProperties: false } as const;
const Input = Type.Object({ orgId: Id('org'), mailboxId: Id('mbx'), userId: Id('usr') }, strict);

/* eslint-disable @typescript-eslint/no-explicit-any */

/** Trustees with full access to a mailbox, one page keyed by user id (rows as grants-model's toTrustee reads them). */
export function fullAccessQuery(db: Db, mailboxId: string): any {
  return db
    .selectFrom('mailbox_access as a')
    .innerJoin('users as u', 'u.id', 'a.trustee_user_id')
    .select(['u.id as id', 'u.login as login', 'u.display_name as display_name', 'a.created_at as created_at'])
    .where('a.mailbox_id', '=', mailboxId);
}

/** The organization (live, in scope) and its active mailbox the principal may see. */
async function openMailbox(ctx: ProcContext, orgId: string, mailboxId: string) {
  const org = await liveOrg(ctx, orgId);
  const m = await visibleMailbox(ctx.tx, ctx.principal, org.id, mailboxId);
  if (m.state !== 'active') throw Errors.stateConflict(`mailbox ${mailboxId} is deleted`);
  return { org, mailbox: m };
}

const view = (mailboxId: string, userId: string, createdAt: number) => ({ mailboxId, userId, createdAt: iso(createdAt)! });

function converge(ctx: ProcContext, org: any, mailboxId: string): void {
  ctx.enqueue({ kind: FULL_ACCESS_JOBS.mailbox, payload: { mailboxId }, queueKey: org.id });
  ctx.target({ type: 'mailbox', id: mailboxId, resellerId: org.reseller_id, orgId: org.id });
}

export const grantFullAccess = defineProcedure({
  id: FULL_ACCESS_PROCS.grantFullAccess,
  input: Input,
  minRole: 'organization_admin',
  async run(ctx, input) {
    const { org, mailbox } = await openMailbox(ctx, input.orgId, input.mailboxId);
    const user = await activeOrgUser(ctx.tx, org.id, input.userId);
    const before = await ctx.tx.selectFrom('mailbox_access').select('created_at')
      .where('mailbox_id', '=', mailbox.id).where('trustee_user_id', '=', user.id).executeTakeFirst();
    if (!before) {
      await ctx.tx.insertInto('mailbox_access').values({ mailbox_id: mailbox.id, org_id: org.id, trustee_user_id: user.id, created_at: ctx.now }).execute();
    }
    const after = view(mailbox.id, user.id, before ? Number(before.created_at) : ctx.now);
    converge(ctx, org, mailbox.id);
    ctx.diff(before ? after : null, after);
    return after;
  },
});

export const revokeFullAccess = defineProcedure({
  id: FULL_ACCESS_PROCS.revokeFullAccess,
  input: Input,
  minRole: 'organization_admin',
  async run(ctx, input) {
    const { org, mailbox } = await openMailbox(ctx, input.orgId, input.mailboxId);
    const before = await ctx.tx.selectFrom('mailbox_access').select('created_at')
      .where('mailbox_id', '=', mailbox.id).where('trustee_user_id', '=', input.userId).executeTakeFirst();
    if (!before) throw Errors.notFound(`user ${input.userId} has no full access to ${mailbox.id}`);
    await ctx.tx.deleteFrom('mailbox_access').where('mailbox_id', '=', mailbox.id).where('trustee_user_id', '=', input.userId).execute();
    const was = view(mailbox.id, input.userId, Number(before.created_at));
    converge(ctx, org, mailbox.id);
    ctx.diff(was, null);
    return was;
  },
});

export const fullAccessProcedures = [grantFullAccess, revokeFullAccess];

import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { liveOrg } from '../directory/procedures.js';
import { getGroup } from '../directory/repo.js';
import { Id } from '../engine/http.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import { iso } from '../core/time.js';
import { GrantObjectId, SendRightSchema, visibleMailbox, type SendRight } from './grants-model.js';
import { activeOrgUser, mailGroupIn } from './groups-model.js';

/**
 * Grant and revoke send-as / send-on-behalf. Both ends must be in the organization named by the path: the
 * object (an active mailbox, or a mail-enabled group) and the trustee (an active user). A user of another
 * organization is refused with recipient_not_in_organization (and is 404 on the HTTP route already, by the
 * user visibility check, for anyone scoped below the provider).
 */

/** Persisted procedure ids (never rename). */
export const GRANT_PROCS = {
  grantSendRight: 'mail.grant_send_right',
  revokeSendRight: 'mail.revoke_send_right',
} as const;

const strict = { additionalProperties: false } as const;
const GrantInput = Type.Object({ orgId: Id('org'), objectId: GrantObjectId, userId: Id('usr'), right: SendRightSchema }, strict);

/** The organization (live, in scope) and the grant's object in it. */
async function openObject(ctx: ProcContext, orgId: string, objectId: string) {
  const org = await liveOrg(ctx, orgId);
  if (objectId.startsWith('mbx_')) {
    const m = await visibleMailbox(ctx.tx, ctx.principal, org.id, objectId);
    if (m.state !== 'active') throw Errors.stateConflict(`mailbox ${objectId} is deleted`);
    return { org, kind: 'mailbox' as const };
  }
  const g = await getGroup(ctx.tx, ctx.principal, org.id, objectId);
  await mailGroupIn(ctx.tx, org.id, g.id);
  return { org, kind: 'group' as const };
}

const view = (objectId: string, kind: string, userId: string, right: SendRight, createdAt: number | null) =>
  ({ objectId, objectKind: kind, userId, right, createdAt: iso(createdAt) });

export const grantSendRight = defineProcedure({
  id: GRANT_PROCS.grantSendRight,
  input: GrantInput,
  minRole: 'organization_admin',
  async run(ctx, input) {
    const { org, kind } = await openObject(ctx, input.orgId, input.objectId);
    const user = await activeOrgUser(ctx.tx, org.id, input.userId);
    const before = await ctx.tx.selectFrom('send_grants').select('created_at').where('object_id', '=', input.objectId)
      .where('trustee_user_id', '=', user.id).where('right_name', '=', input.right).executeTakeFirst();
    if (!before) {
      await ctx.tx.insertInto('send_grants').values({
        object_id: input.objectId, org_id: org.id, object_kind: kind, trustee_user_id: user.id, right_name: input.right, created_at: ctx.now,
      }).execute();
    }
    const after = view(input.objectId, kind, user.id, input.right, before ? Number(before.created_at) : ctx.now);
    ctx.target({ type: kind, id: input.objectId, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(before ? after : null, after);
    return after;
  },
});

export const revokeSendRight = defineProcedure({
  id: GRANT_PROCS.revokeSendRight,
  input: GrantInput,
  minRole: 'organization_admin',
  async run(ctx, input) {
    const { org, kind } = await openObject(ctx, input.orgId, input.objectId);
    const before = await ctx.tx.selectFrom('send_grants').select('created_at').where('object_id', '=', input.objectId)
      .where('trustee_user_id', '=', input.userId).where('right_name', '=', input.right).executeTakeFirst();
    if (!before) throw Errors.notFound(`user ${input.userId} holds no ${input.right} grant on ${input.objectId}`);
    await ctx.tx.deleteFrom('send_grants').where('object_id', '=', input.objectId).where('trustee_user_id', '=', input.userId)
      .where('right_name', '=', input.right).execute();
    const was = view(input.objectId, kind, input.userId, input.right, Number(before.created_at));
    ctx.target({ type: kind, id: input.objectId, resellerId: org.reseller_id, orgId: org.id });
    ctx.diff(was, null);
    return was;
  },
});

export const grantProcedures = [grantSendRight, revokeSendRight];

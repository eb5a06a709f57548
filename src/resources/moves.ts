import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { defineProcedure, type ProcContext } from '../engine/procedure.js';
import type { Engine, JobHandler } from '../engine/engine.js';
import { Id } from '../engine/http.js';
import { liveOrg } from '../directory/procedures.js';
import { lockSubscription } from '../plans/limits.js';
import { moveRecipient, returnAllocation } from './placement.js';
import type { MailboxDataProvider } from './ports.js';

/**
 * Mailbox moves (issue 4 item 4). The procedure moves the placement and the accounting at once (the charge,
 * and the allocation with it when the target piece lacks room), records where the data comes from
 * (`moving_from`) and asks for a provider job that copies the data; the job clears `moving_from` when the
 * copy is done. Moving all of an organization's mailboxes is a batch request of single moves: each item
 * commits on its own, so a crash resumes with the items not yet done. If the copy fails for good, the
 * compensation moves the placement back to where the data still is.
 */

export const MOVE_PROCS = {
  moveMailbox: 'resources.move_mailbox',
  moveOrganization: 'resources.move_organization_mailboxes',
} as const;
export const MOVE_JOB = 'mailstore.move_mailbox';

const strict = { additionalProperties: false } as const;
export const MoveBody = Type.Object({ storeId: Id('mst') }, strict);

interface MovePayload {
  orgId: string;
  mailboxId: string;
  from: string;
  to: string;
  /** Bytes of allocation the move took from `from` to `to` (the compensation gives them back). */
  allocationMoved?: number;
}

async function lockedMailbox(ctx: ProcContext, orgId: string, mailboxId: string): Promise<any> {
  let q = ctx.tx.selectFrom('mailboxes').selectAll().where('id', '=', mailboxId).where('org_id', '=', orgId);
  if (ctx.dialect === 'postgres') q = q.forUpdate();
  const m = await q.executeTakeFirst();
  if (!m) throw Errors.notFound(`mailbox ${mailboxId} not found`);
  return m;
}

const view = (m: any) => ({ mailboxId: m.id as string, storeId: m.store_id as string | null, movingFrom: (m.moving_from ?? null) as string | null });

/**
 * The placement of mailbox `row` changed from store `from` to `to` in this transaction: ask for the copy job
 * and return the columns that mark the copy in flight. A mailbox whose earlier copy has not finished keeps
 * its original source (its data is still there; the earlier job sees it moved on and stands down).
 */
export function requestDataMove(
  ctx: Pick<ProcContext, 'enqueue'>, row: { id: string; org_id: string; moving_from?: string | null } | undefined, from: string, to: string,
): { moving_from: string | null } {
  if (!row) throw new Error('a mailbox that can move needs its row');
  const source = row.moving_from ?? from;
  if (source === to) return { moving_from: null };
  const payload: MovePayload = { orgId: row.org_id, mailboxId: row.id, from: source, to };
  ctx.enqueue({ kind: MOVE_JOB, payload, queueKey: row.org_id });
  return { moving_from: source };
}

export const moveMailbox = defineProcedure({
  id: MOVE_PROCS.moveMailbox,
  input: Type.Object({ orgId: Id('org'), mailboxId: Id('mbx'), ...MoveBody.properties }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const before = await lockedMailbox(ctx, org.id, input.mailboxId);
    const target = { type: 'mailbox', id: before.id, resellerId: org.reseller_id, orgId: org.id };
    ctx.target(target);
    if (before.store_id === input.storeId) return { ...view(before), moved: false };
    if (before.state !== 'active') throw Errors.stateConflict(`mailbox ${before.id} is deleted; restore it before moving it`);
    if (before.moving_from) throw Errors.stateConflict(`mailbox ${before.id} is still being copied from ${before.moving_from}; wait for that move to finish`);
    const store = await ctx.tx.selectFrom('mailstores').select(['id', 'purpose']).where('id', '=', input.storeId).executeTakeFirst();
    if (!store || store.purpose !== 'mailbox') throw Errors.invalidSources(`store ${input.storeId} is not a mailbox store`);
    const s = await lockSubscription(ctx, org.id);
    const { storeId: to, allocationMoved } = await moveRecipient(ctx, s, { storeId: before.store_id, charged: Number(before.charged_bytes), counted: true }, input.storeId);
    const set = { store_id: to, ...requestDataMove(ctx, before, before.store_id, to), updated_at: ctx.now };
    await ctx.tx.updateTable('mailboxes').set(set).where('id', '=', before.id).execute();
    const payload: MovePayload = { orgId: org.id, mailboxId: before.id, from: before.store_id, to, allocationMoved };
    ctx.compensation(payload);
    const after = { ...before, ...set };
    ctx.diff(view(before), view(after));
    ctx.event({ resellerId: org.reseller_id, orgId: org.id, objectType: 'mailbox', objectId: before.id, event: 'moved', data: { from: before.store_id, to } });
    return { ...view(after), moved: true };
  },
  /**
   * The copy failed for good: the mailbox goes back to the old store, and so does whatever reached the new one
   * (mail delivered there since the switch, messages the copy had carried over, a staged part of the old
   * home): a move job the other way round, marked in flight like any move.
   */
  async compensate(ctx, data: MovePayload) {
    const m = await ctx.tx.selectFrom('mailboxes').selectAll().where('id', '=', data.mailboxId).executeTakeFirst();
    if (!m || m.store_id !== data.to || m.moving_from !== data.from) return;
    if (m.state === 'active') {
      const s = await lockSubscription(ctx, data.orgId);
      const back = await moveRecipient(ctx, s, { storeId: data.to, charged: Number(m.charged_bytes), counted: true }, data.from);
      // the allocation that came along goes back too (unless moving back already brought it)
      if (back.allocationMoved === 0) await returnAllocation(ctx, s, data.to, data.from, data.allocationMoved ?? 0);
    }
    const back = requestDataMove(ctx, { id: m.id, org_id: m.org_id, moving_from: null }, data.to, data.from);
    await ctx.tx.updateTable('mailboxes').set({ store_id: data.from, ...back, updated_at: ctx.now }).where('id', '=', m.id).execute();
  },
});

/** Move every active mailbox of the organization to one store: a batch request of single moves. */
export const moveOrganization = defineProcedure({
  id: MOVE_PROCS.moveOrganization,
  input: Type.Object({ orgId: Id('org'), ...MoveBody.properties }, strict),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const org = await liveOrg(ctx, input.orgId);
    const store = await ctx.tx.selectFrom('mailstores').select(['id', 'purpose', 'state']).where('id', '=', input.storeId).executeTakeFirst();
    if (!store || store.purpose !== 'mailbox') throw Errors.invalidSources(`store ${input.storeId} is not a mailbox store`);
    if (store.state !== 'active') throw Errors.invalidSources(`store ${input.storeId} is ${store.state}, not active`);
    const boxes = await ctx.tx.selectFrom('mailboxes').select('id').where('org_id', '=', org.id).where('state', '=', 'active')
      .where((eb) => eb.or([eb('store_id', 'is', null), eb('store_id', '!=', input.storeId)])).orderBy('id').execute();
    const target = { type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id };
    ctx.target(target);
    const batchRequestId = boxes.length === 0 ? null
      : ctx.spawnBatch({ procedure: MOVE_PROCS.moveMailbox, items: boxes.map((b) => ({ orgId: org.id, mailboxId: b.id, storeId: input.storeId })), target });
    ctx.diff(null, { storeId: input.storeId, mailboxes: boxes.length });
    return { orgId: org.id, storeId: input.storeId, mailboxes: boxes.length, batchRequestId };
  },
});

export const moveProcedures = [moveMailbox, moveOrganization];

/** The copy job: converge the data to where the database says the mailbox is, then mark the move done. */
export function moveJobs(engine: Engine, data: MailboxDataProvider): Record<string, JobHandler> {
  return {
    [MOVE_JOB]: {
      // a large mailbox takes a while to copy (a job that times out is retried and resumes the copy)
      timeoutMs: 30 * 60_000,
      async run(payload, ctx) {
        const p = payload as MovePayload;
        const db = engine.store.db;
        const m = await db.selectFrom('mailboxes').select(['store_id', 'moving_from']).where('id', '=', p.mailboxId).executeTakeFirst();
        // moved back by compensation, moved on, or purged meanwhile: nothing of this move is left to do
        // (moving_from already cleared: the copy was done, only finishing it may be left)
        if (!m || m.store_id !== p.to || (m.moving_from !== p.from && m.moving_from !== null)) return;
        const roots = await db.selectFrom('mailstores as s').innerJoin('mail_servers as v', 'v.id', 's.server_id').select(['s.id', 'v.mail_root'])
          .where('s.id', 'in', [p.from, p.to]).execute();
        const rootOf = (id: string) => roots.find((r) => r.id === id)?.mail_root ?? '';
        const from = { orgId: p.orgId, mailboxId: p.mailboxId, storeId: p.from, mailRoot: rootOf(p.from) };
        const to = { orgId: p.orgId, mailboxId: p.mailboxId, storeId: p.to, mailRoot: rootOf(p.to) };
        if (m.moving_from === p.from) {
          if (ctx.signal.aborted) throw Errors.unavailable('lease lost before the copy', { retryable: true });
          await data.moveMailbox(from, to, ctx);
          await engine.txr.run(async (tx) => {
            await tx.updateTable('mailboxes').set({ moving_from: null }).where('id', '=', p.mailboxId).where('store_id', '=', p.to).where('moving_from', '=', p.from).execute();
          });
        }
        await data.finishMove?.(from, to, ctx);
      },
    },
  };
}

import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { errorResponses, Id, type RouteDeps } from '../engine/http.js';
import { visibleMailbox } from '../mail/grants-model.js';
import type { Db } from '../store/db.js';
import { doveadm, parseTab } from './doveadm.js';
import { renderedPlane } from './follow.js';

/**
 * A mailbox's usage as its mail server's Dovecot counts it, read at the moment it is asked for
 * (`doveadm quota get`): never estimated, never a copy that could be stale. Only mail servers whose data plane
 * this host manages (HMC_DATAPLANE_ROOT) can be asked: for others the answer is 409 dataplane_not_managed, and
 * 503 dataplane_unavailable when that Dovecot does not answer.
 */

const strict = { additionalProperties: false } as const;

export const UsageView = Type.Object({
  mailboxId: Type.String(),
  bytes: Type.Integer({ description: 'storage used, as Dovecot counts it (KiB precision)' }),
  messages: Type.Integer(),
  limitBytes: Type.Union([Type.Integer(), Type.Null()], { description: 'the hard quota Dovecot enforces (prohibitSendReceiveQuota); null: none' }),
  readAt: Type.String({ format: 'date-time' }),
});

/** The usage of mailbox `mailboxId` of `orgId` through the Dovecot of the server it is placed on. */
export async function mailboxUsage(db: Db, root: string | undefined, mailboxId: string): Promise<{ bytes: number; messages: number; limitBytes: number | null }> {
  const placed = await db.selectFrom('mailboxes as m').innerJoin('mailstores as s', 's.id', 'm.store_id')
    .select(['s.server_id']).where('m.id', '=', mailboxId).executeTakeFirst();
  const name = placed && await db.selectFrom('dp_userdb_names as n').innerJoin('dp_userdb as u', (j) => j.onRef('u.name', '=', 'n.name').onRef('u.server_id', '=', 'n.server_id'))
    .select('n.name').where('u.mailbox_id', '=', mailboxId).where('n.server_id', '=', placed.server_id).executeTakeFirst();
  if (!placed || !name) throw Errors.stateConflict(`mailbox ${mailboxId} is not in the mail path (deleted, disabled, unplaced or its organization suspended)`);
  const plane = renderedPlane(root, placed.server_id);
  // tenants never see server ids: the messages name none
  if (!plane) throw Errors.dataplaneNotManaged("this host does not manage the mailbox's mail server (HMC_DATAPLANE_ROOT)");
  const r = await doveadm(plane.dovecotConfig, ['-f', 'tab', 'quota', 'get', '-u', String(name.name)], { timeoutMs: 10_000 });
  if (r.code !== 0) throw Errors.dataplaneUnavailable(`the mail server's Dovecot did not answer (doveadm exited ${r.code})`);
  const rows = parseTab(r.stdout);
  const of = (type: string) => rows.find((x) => x.type === type);
  const kib = (v: string | undefined) => (v === undefined || v === '-' ? null : Number(v) * 1024);
  return { bytes: kib(of('STORAGE')?.value) ?? 0, messages: Number(of('MESSAGE')?.value ?? 0), limitBytes: kib(of('STORAGE')?.limit) };
}

export const usageRoutes = (root: string | undefined) => (app: FastifyInstance, deps: RouteDeps): void => {
  app.get('/api/v1/organizations/:orgId/mailboxes/:mailboxId/usage', {
    schema: {
      tags: ['mailboxes'], security: [{ bearer: [] }],
      description: "The mailbox's storage and message count as its mail server's Dovecot counts them now, with the hard quota it enforces.",
      params: Type.Object({ orgId: Id('org'), mailboxId: Id('mbx') }, strict),
      response: { 200: UsageView, ...errorResponses },
    },
  }, async (req) => {
    const { orgId, mailboxId } = req.params as { orgId: string; mailboxId: string };
    await visibleMailbox(deps.db, req.principal, orgId, mailboxId);
    return { mailboxId, ...(await mailboxUsage(deps.db, root, mailboxId)), readAt: new Date().toISOString() };
  });
};

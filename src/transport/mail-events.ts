import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { roleLevel } from '../core/tenancy.js';
import { iso } from '../core/time.js';
import { getOrganization } from '../directory/repo.js';
import type { DirectoryHooks } from '../directory/hooks.js';
import { errorResponses, Id, ListOf, LogListQuery, Nullable, type RouteDeps } from '../engine/http.js';
import type { Db } from '../store/db.js';
import { mapPage, page } from '../store/page.js';
import { noRows, scopeRows } from '../store/scope.js';

/**
 * Mail events: what the mail path did that an organization's admins should know about, written by the Postfix
 * policy service (now: a sending limit reached, transport/sending-limits.ts) and read within scope through
 * `GET /api/v1/organizations/{orgId}/mail-events`. They are not billing events (billing_events is the append-only
 * record of what is charged, written by procedures) nor audit entries (a request's trail): the mail path runs no
 * procedure, and a hijacked account at its limit is operational news, not a change of desired state.
 *
 * Scope as everywhere (store/scope.ts): the provider sees all, a reseller its organizations', an organization's
 * admins and helpdesk their own; a user none (404, as for the subscription). Rows carry reseller_id so a reseller
 * reads without a join, and follow their organization to another reseller (DirectoryHooks.tenantTables).
 */

const strict = { additionalProperties: false } as const;

export const MailEventView = Type.Object({
  id: Type.String(), orgId: Type.String(), at: Type.String({ format: 'date-time' }),
  event: Type.String({ description: 'sending_limit_reached: a mailbox or the organization reached a sending limit (data: scope, limit, max, count)' }),
  mailboxId: Nullable(Type.String({ description: 'the sending mailbox' })), login: Nullable(Type.String({ description: 'the login that sent' })),
  data: Type.Unknown(),
});

/* eslint-disable @typescript-eslint/no-explicit-any */
const toMailEvent = (r: any) => ({
  id: r.id, orgId: r.org_id, at: iso(r.at)!, event: r.event, mailboxId: r.mailbox_id ?? null, login: r.login ?? null, data: JSON.parse(r.data),
});

/** Mail events of one organization, newest last (or first with `order=desc`), within the caller's scope. */
export function registerMailEventRoutes(app: FastifyInstance, { db }: RouteDeps): void {
  app.get('/api/v1/organizations/:orgId/mail-events', {
    schema: {
      tags: ['mail-events'], security: [{ bearer: [] }],
      description: 'What the mail path reported about the organization: a sending limit reached (one event per limit and window, however often the client retried).',
      params: Type.Object({ orgId: Id('org') }, strict),
      querystring: Type.Object({
        ...LogListQuery, event: Type.Optional(Type.String({ maxLength: 64 })), mailbox: Type.Optional(Id('mbx')),
      }, strict),
      response: { 200: ListOf(MailEventView), ...errorResponses },
    },
  }, async (req) => {
    const org = await getOrganization(db, req.principal, (req.params as any).orgId);
    if (roleLevel(req.principal.role) === 'user') throw Errors.notFound(`organization ${org.id} not found`);
    const f = req.query as any;
    let q = scopeRows(db.selectFrom('mail_events').selectAll(), req.principal, noRows).where('org_id', '=', org.id);
    if (f.event) q = q.where('event', '=', f.event);
    if (f.mailbox) q = q.where('mailbox_id', '=', f.mailbox);
    return mapPage(await page(q, 'id', f), toMailEvent);
  });
}

async function purgeOrganizationMailEvents(tx: Db, orgId: string): Promise<void> {
  await tx.deleteFrom('mail_events').where('org_id', '=', orgId).execute();
  // its mailboxes' counters are keyed by mailbox id and expire within a day (sending-limits pruneCounters)
  await tx.deleteFrom('sending_counters').where('subject_id', '=', orgId).execute();
}

/** The transport area's part in the directory's lifecycles (idempotent). */
export function registerTransportDirectoryHooks(h: DirectoryHooks): void {
  h.tenantTables.add('mail_events');
  h.purgeOrganization.add(purgeOrganizationMailEvents);
}

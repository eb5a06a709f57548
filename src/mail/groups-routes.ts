import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../core/errors.js';
import { getGroup } from '../directory/repo.js';
import { errorResponses, Id, ListOf, ListQuery, submitAndReply, WaitQuery, type RouteDeps } from '../engine/http.js';
import { mapPage, page } from '../store/page.js';
import {
  AddMailMemberBody, EnableGroupMailBody, GroupMailView, MailMembershipView, ManagerChangeView, ManagerView, recipientListQuery,
  RecipientView, SendersView, SetSendersBody, toGroupMail, toRecipient,
} from './groups-model.js';
import { GROUP_MAIL_PROCS as P } from './groups-procedures.js';

/**
 * HTTP routes of distribution groups, under the directory's /api/v1/organizations/{orgId}/groups/{groupId}.
 *
 * Mail members are added with POST …/mail-members {memberId} (a mbx_, con_ or grp_ id) and removed with one
 * DELETE route per kind (…/mail-members/mailboxes/{mailboxId}, …/contacts/{contactId},
 * …/groups/{memberGroupId}): every path parameter is an id of ONE kind, so the API's visibility check
 * (404 outside the caller's scope) and the route-walking tests cover these routes like any other.
 * Listed senders are replaced as a whole list (PUT …/senders). No new id kind: groups, mailboxes,
 * contacts and users have their own areas' visibility checks.
 */

const strict = { additionalProperties: false } as const;
const params = (p: Record<string, TSchema>) => Type.Object(p, strict);
const ok = (view: TSchema, status = 200) => ({ [status]: view, 202: view, ...errorResponses });
const GROUP = { orgId: Id('org'), groupId: Id('grp') };
const BASE = '/api/v1/organizations/:orgId/groups/:groupId';

export function registerGroupMailRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['distribution groups'], security: [{ bearer: [] }] };
  const group = (req: any) => getGroup(db, req.principal, req.params.orgId, req.params.groupId);

  app.get(`${BASE}/mail`, { schema: { ...tag, params: params(GROUP), response: { 200: GroupMailView, ...errorResponses } } }, async (req) => {
    const g = await group(req);
    const row = await db.selectFrom('mail_groups').selectAll().where('group_id', '=', g.id).executeTakeFirst();
    if (!row) throw Errors.notFound(`group ${g.id} is not mail-enabled`);
    return toGroupMail(row);
  });
  app.put(`${BASE}/mail`, {
    schema: {
      ...tag, params: params(GROUP), querystring: WaitQuery, body: EnableGroupMailBody, response: ok(GroupMailView),
      description: 'Mail-enable the group (counts toward the plan\'s maxGroups) or change its address and settings; a replaced address is quarantined.',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.enableGroupMail, { ...(req.body as object), ...(req.params as object) }));
  app.delete(`${BASE}/mail`, {
    schema: {
      ...tag, params: params(GROUP), querystring: WaitQuery, response: ok(GroupMailView),
      description: 'Disable mail: the address goes to quarantine, members/managers/senders/grants/folder permissions of the group are removed. Required before the group can be deleted.',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.disableGroupMail, req.params));

  // ---- mail members ----
  app.get(`${BASE}/mail-members`, { schema: { ...tag, params: params(GROUP), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(RecipientView), ...errorResponses } } },
    async (req) => {
      const g = await group(req);
      return mapPage(await page(recipientListQuery(db, 'mail_group_members', g.id), 'r.member_id', req.query as any), toRecipient);
    });
  app.post(`${BASE}/mail-members`, { schema: { ...tag, params: params(GROUP), querystring: WaitQuery, body: AddMailMemberBody, response: ok(MailMembershipView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.addGroupMailMember, { ...(req.body as object), ...(req.params as object) }));
  for (const [segment, name, prefix] of [['mailboxes', 'mailboxId', 'mbx'], ['contacts', 'contactId', 'con'], ['groups', 'memberGroupId', 'grp']] as const) {
    app.delete(`${BASE}/mail-members/${segment}/:${name}`, { schema: { ...tag, params: params({ ...GROUP, [name]: Id(prefix) }), querystring: WaitQuery, response: ok(MailMembershipView) } },
      (req, reply) => {
        const p = req.params as Record<string, string>;
        return submitAndReply(req, reply, deps, P.removeGroupMailMember, { orgId: p.orgId, groupId: p.groupId, memberId: p[name] });
      });
  }

  // ---- managers ----
  app.get(`${BASE}/managers`, { schema: { ...tag, params: params(GROUP), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(ManagerView), ...errorResponses } } },
    async (req) => {
      const g = await group(req);
      const q = db.selectFrom('group_managers as m').innerJoin('users as u', 'u.id', 'm.user_id')
        .select(['u.id as id', 'u.login as login', 'u.display_name as display_name']).where('m.group_id', '=', g.id);
      return mapPage(await page(q, 'u.id', req.query as any), (r: any) => ({ userId: r.id, login: r.login, displayName: r.display_name }));
    });
  const MANAGER = { ...GROUP, userId: Id('usr') };
  app.put(`${BASE}/managers/:userId`, { schema: { ...tag, params: params(MANAGER), querystring: WaitQuery, response: ok(ManagerChangeView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.addGroupManager, req.params));
  app.delete(`${BASE}/managers/:userId`, { schema: { ...tag, params: params(MANAGER), querystring: WaitQuery, response: ok(ManagerChangeView) } },
    (req, reply) => submitAndReply(req, reply, deps, P.removeGroupManager, req.params));

  // ---- listed senders ----
  app.get(`${BASE}/senders`, { schema: { ...tag, params: params(GROUP), querystring: Type.Object(ListQuery, strict), response: { 200: ListOf(RecipientView), ...errorResponses } } },
    async (req) => {
      const g = await group(req);
      return mapPage(await page(recipientListQuery(db, 'group_senders', g.id), 'r.sender_id', req.query as any), toRecipient);
    });
  app.put(`${BASE}/senders`, {
    schema: {
      ...tag, params: params(GROUP), querystring: WaitQuery, body: SetSendersBody, response: ok(SendersView),
      description: 'Replace the list of recipients who may send to the group when its sendPolicy is "listed".',
    },
  }, (req, reply) => submitAndReply(req, reply, deps, P.setGroupSenders, { ...(req.body as object), ...(req.params as object) }));
}

import { Readable } from 'node:stream';
import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Errors } from '../core/errors.js';
import { normalizeAddress } from '../core/names.js';
import { roleLevel, type Principal } from '../core/tenancy.js';
import { getLiveOrganization, getOrganization, inScope } from '../directory/repo.js';
import { errorResponses, Id, type RouteDeps } from '../engine/http.js';
import type { Db } from '../store/db.js';
import {
  ALIAS_CSV_COLUMNS, csvLine, GROUP_CSV_COLUMNS, GROUP_MEMBER_CSV_COLUMNS, MAILBOX_CSV_COLUMNS, MAILBOX_IMPORT_COLUMNS, mailboxCsvLine, mailboxRowToItem, parseCsvTable,
} from './csv.js';
import { GROUP_IMPORT_COLUMNS, GROUP_IMPORT_PROC, groupRowToItem } from './groups-import.js';
import { GROUP_MAIL_PROCS } from './groups-procedures.js';
import { MAILBOX_PROCS } from './mailboxes-model.js';
import { aliasesOf, mailboxesQuery } from './mailboxes-repo.js';

/**
 * CSV import and export of mailboxes, aliases, groups and group members. An import is one batch request of the
 * single-object procedure (mail.create_mailbox, mail.add_mailbox_alias, mail.import_group, mail.add_group_mail_member), one item per row, exactly like the directory's
 * user import: each row is validated and committed or refused on its own, results per row under
 * /api/v1/requests/{id}/items. Exports stream the organization's rows page by page (keyset on id), so
 * 100,000 mailboxes never sit in memory at once.
 */

const strict = { additionalProperties: false } as const;
const ORG = Type.Object({ orgId: Id('org') }, strict);
/** Rows read per query while exporting: big enough that 100k rows are 200 queries, small enough to stream. */
const EXPORT_PAGE = 500;
/** Logins or addresses looked up per query while resolving an import (well under SQLite's 32,766 parameters). */
const LOOKUP_CHUNK = 500;

const importBody = Type.Union([
  Type.String({ maxLength: 50 * 1024 * 1024 }),
  Type.Object({ items: Type.Array(Type.Object({}, { additionalProperties: true }), { minItems: 1, maxItems: 100_000 }) }, strict),
]);
const ImportAccepted = Type.Object({ request: Type.Object({ id: Type.String(), state: Type.String(), items: Type.Integer() }) });

/** The key an address is stored under, or the text as typed when it is no address (the row then fails on its own). */
function addressKey(s: string): string {
  try {
    return normalizeAddress(s).address;
  } catch {
    return s.trim().toLowerCase();
  }
}

/** Runs `lookup` over `keys` in chunks and merges the answers. */
async function lookupAll(keys: string[], lookup: (chunk: string[]) => Promise<[string, string][]>): Promise<Map<string, string>> {
  const unique = [...new Set(keys)];
  const out = new Map<string, string>();
  for (let i = 0; i < unique.length; i += LOOKUP_CHUNK) for (const [k, v] of await lookup(unique.slice(i, i + LOOKUP_CHUNK))) out.set(k, v);
  return out;
}

/**
 * A user mailbox row names its user by `userId`, `login`, or (neither given) its primaryAddress, which is a
 * user's login by default. Unresolved rows go on without userId and fail on their own (a user mailbox needs
 * userId), never the batch.
 */
async function resolveUsers(db: Db, p: Principal, orgId: string, rows: Record<string, string>[], items: Record<string, unknown>[]): Promise<void> {
  const wanted = rows.map((r, i) => ((items[i]!.kind ?? 'user') === 'user' && !r.userId ? addressKey(r.login || r.primaryAddress || '') : ''));
  const found = await lookupAll(wanted.filter(Boolean), async (chunk) => {
    const users = await inScope(db.selectFrom('users').select(['id', 'login']), p).where('org_id', '=', orgId).where('login', 'in', chunk).execute();
    return users.map((u) => [u.login as string, u.id as string]);
  });
  wanted.forEach((login, i) => {
    const id = login ? found.get(login) : undefined;
    if (id) items[i]!.userId = id;
  });
}

/** An alias row names its mailbox by id or by any address it holds. */
async function resolveMailboxes(db: Db, orgId: string, rows: Record<string, string>[]): Promise<Record<string, unknown>[]> {
  const keys = rows.map((r) => (r.mailbox && !r.mailbox.startsWith('mbx_') ? addressKey(r.mailbox) : ''));
  const found = await lookupAll(keys.filter(Boolean), async (chunk) => {
    const hits = await db.selectFrom('addresses').select(['address', 'recipient_id'])
      .where('org_id', '=', orgId).where('recipient_kind', '=', 'mailbox').where('address', 'in', chunk).execute();
    return hits.map((h) => [h.address as string, h.recipient_id as string]);
  });
  return rows.map((r, i) => {
    const mailboxId = r.mailbox?.startsWith('mbx_') ? r.mailbox : found.get(keys[i]!);
    // an address nobody in the organization holds: the row keeps it and fails validation (mailboxId must be an mbx_ id)
    return { ...(mailboxId || r.mailbox ? { mailboxId: mailboxId ?? r.mailbox } : {}), ...(r.alias ? { address: r.alias } : {}) };
  });
}

const RECIPIENT_ID = /^(mbx|con|grp)_/;

/**
 * A group-member row: the group by grp_ id, address or name; the member by mbx_/con_/grp_ id, by an address
 * of the organization's namespace (mailbox or group) or by a contact's external address. What cannot be
 * resolved is passed on as typed and fails that row's validation.
 */
async function resolveGroupMembers(db: Db, orgId: string, rows: Record<string, string>[]): Promise<Record<string, unknown>[]> {
  const addr = (v: string | undefined) => (v && !RECIPIENT_ID.test(v) ? addressKey(v) : '');
  const groupKeys = rows.map((r) => addr(r.group));
  const memberKeys = rows.map((r) => addr(r.member));
  const inNamespace = await lookupAll([...groupKeys, ...memberKeys].filter(Boolean), async (chunk) => {
    const hits = await db.selectFrom('addresses').select(['address', 'recipient_id']).where('org_id', '=', orgId)
      .where('recipient_kind', 'in', ['mailbox', 'group']).where('address', 'in', chunk).execute();
    return hits.map((h) => [h.address as string, h.recipient_id as string]);
  });
  const byName = await lookupAll(rows.map((r) => (r.group && !r.group.includes('@') && !r.group.startsWith('grp_') ? r.group : '')).filter(Boolean), async (chunk) => {
    const hits = await db.selectFrom('groups').select(['name', 'id']).where('org_id', '=', orgId).where('name', 'in', chunk).execute();
    return hits.map((h) => [h.name as string, h.id as string]);
  });
  const contacts = await lookupAll(memberKeys.filter((k) => k && !inNamespace.has(k)), async (chunk) => {
    const hits = await db.selectFrom('contacts').select(['external_address', 'id']).where('org_id', '=', orgId).where('external_address', 'in', chunk).execute();
    return hits.map((h) => [h.external_address as string, h.id as string]);
  });
  return rows.map((r, i) => {
    const groupId = r.group?.startsWith('grp_') ? r.group : inNamespace.get(groupKeys[i]!) ?? byName.get(r.group ?? '') ?? r.group;
    const memberId = r.member && RECIPIENT_ID.test(r.member) ? r.member : inNamespace.get(memberKeys[i]!) ?? contacts.get(memberKeys[i]!) ?? r.member;
    return { ...(groupId ? { groupId } : {}), ...(memberId ? { memberId } : {}) };
  });
}

/** Submits the items as one batch request of `procId` against the organization and answers 202. */
async function submitImport(req: FastifyRequest, reply: FastifyReply, deps: RouteDeps, org: { id: string; reseller_id: string }, procId: string, items: Record<string, unknown>[]) {
  const key = req.headers['idempotency-key'];
  const out = await deps.engine.submitBatch(req.principal, procId, items.map((i) => ({ ...i, orgId: org.id })), {
    idempotencyKey: typeof key === 'string' ? key : undefined,
    target: { type: 'organization', id: org.id, resellerId: org.reseller_id, orgId: org.id },
  });
  reply.code(202).header('HMC-Request-Id', out.requestId).header('HMC-Request-State', out.state);
  return { request: { id: out.requestId, state: out.state, items: items.length } };
}

/** An organization whose mail objects the caller may read in bulk: organization helpdesk and up (404 otherwise). */
async function readableOrg(db: Db, p: Principal, orgId: string): Promise<{ id: string }> {
  const org = await getOrganization(db, p, orgId);
  if (roleLevel(p.role) === 'user') throw Errors.notFound(`organization ${orgId} not found`);
  return org;
}

/** Streams `header` then the lines `pageLines` yields for each keyset page until a page comes back short. */
function csvStream(header: readonly string[], pageLines: (after: string | null) => Promise<{ lines: string[]; last: string | null }>): Readable {
  return Readable.from((async function* () {
    yield csvLine(header);
    let after: string | null = null;
    for (;;) {
      const { lines, last } = await pageLines(after);
      if (lines.length > 0) yield lines.join('');
      if (!last) return;
      after = last;
    }
  })());
}

function sendCsv(reply: FastifyReply, name: string, stream: Readable): FastifyReply {
  return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${name}.csv"`).send(stream);
}

/* eslint-disable @typescript-eslint/no-explicit-any */
export function registerMailCsvRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db } = deps;
  const tag = { tags: ['mailboxes'], security: [{ bearer: [] }] };
  const base = '/api/v1/organizations/:orgId/mailboxes';
  const csvOk = (description: string): Record<number, TSchema> => ({ ...errorResponses, 200: Type.String({ description }) });

  app.post(`${base}/import`, {
    schema: {
      ...tag,
      description: `Create mailboxes from CSV (Content-Type text/csv, header row; columns ${MAILBOX_IMPORT_COLUMNS.join(', ')}) or JSON {items:[mailbox bodies]}. `
        + 'aliases: space-separated; forwarding: MODE:ADDRESS; a user mailbox finds its user by userId, login or primaryAddress. '
        + 'Runs in the background as one request with per-row results: follow GET /api/v1/requests/{id} and /items.',
      params: ORG, body: importBody, response: { 202: ImportAccepted, ...errorResponses },
    },
  }, async (req, reply) => {
    const org = await getLiveOrganization(db, req.principal, (req.params as any).orgId);
    let items: Record<string, unknown>[];
    if (typeof req.body === 'string') {
      const rows = parseCsvTable(req.body, MAILBOX_IMPORT_COLUMNS);
      items = rows.map(mailboxRowToItem);
      await resolveUsers(db, req.principal, org.id, rows, items);
    } else items = (req.body as { items: Record<string, unknown>[] }).items;
    return submitImport(req, reply, deps, org, MAILBOX_PROCS.createMailbox, items);
  });

  app.get(`${base}/export`, {
    schema: { ...tag, description: `The organization's active mailboxes as CSV (columns ${MAILBOX_CSV_COLUMNS.join(', ')}), the format the import reads.`, params: ORG, response: csvOk('text/csv') },
  }, async (req, reply) => {
    const org = await readableOrg(db, req.principal, (req.params as any).orgId);
    return sendCsv(reply, `mailboxes-${org.id}`, csvStream(MAILBOX_CSV_COLUMNS, async (after) => {
      let q = mailboxesQuery(db, req.principal).where('org_id', '=', org.id).where('state', '=', 'active');
      if (after) q = q.where('id', '>', after);
      const rows = await q.orderBy('id').limit(EXPORT_PAGE).execute();
      const ids = rows.map((r) => r.id as string);
      const aliases = await aliasesOf(db, ids);
      const userIds = rows.map((r) => r.user_id as string | null).filter((u): u is string => !!u);
      const logins = new Map<string, string>();
      if (userIds.length > 0) for (const u of await db.selectFrom('users').select(['id', 'login']).where('id', 'in', userIds).execute()) logins.set(u.id, u.login);
      const lines = rows.map((r) => mailboxCsvLine({
        primaryAddress: r.primary_address, kind: r.kind, displayName: r.display_name, planId: r.mailbox_plan_id, aliases: aliases.get(r.id) ?? [],
        hiddenFromAddressBook: Number(r.hidden) === 1, enabled: Number(r.enabled) === 1,
        forwarding: r.forward_to ? { to: r.forward_to, mode: r.forward_mode } : null, login: r.user_id ? logins.get(r.user_id) ?? null : null,
      }));
      return { lines, last: rows.length === EXPORT_PAGE ? ids.at(-1)! : null };
    }));
  });

  app.post(`${base}/aliases/import`, {
    schema: {
      ...tag,
      description: `Add aliases from CSV (columns ${ALIAS_CSV_COLUMNS.join(', ')}: the mailbox by id or any of its addresses, and the alias) or JSON {items:[{mailboxId, address}]}. One request with per-row results.`,
      params: ORG, body: importBody, response: { 202: ImportAccepted, ...errorResponses },
    },
  }, async (req, reply) => {
    const org = await getLiveOrganization(db, req.principal, (req.params as any).orgId);
    const items = typeof req.body === 'string'
      ? await resolveMailboxes(db, org.id, parseCsvTable(req.body, ALIAS_CSV_COLUMNS, ALIAS_CSV_COLUMNS))
      : (req.body as { items: Record<string, unknown>[] }).items;
    return submitImport(req, reply, deps, org, MAILBOX_PROCS.addMailboxAlias, items);
  });

  app.get(`${base}/aliases/export`, {
    schema: { ...tag, description: `Every alias of the organization's active mailboxes as CSV (columns ${ALIAS_CSV_COLUMNS.join(', ')}; mailbox = its primary address).`, params: ORG, response: csvOk('text/csv') },
  }, async (req, reply) => {
    const org = await readableOrg(db, req.principal, (req.params as any).orgId);
    return sendCsv(reply, `aliases-${org.id}`, csvStream(ALIAS_CSV_COLUMNS, async (after) => {
      let q = mailboxesQuery(db, req.principal).where('org_id', '=', org.id).where('state', '=', 'active');
      if (after) q = q.where('id', '>', after);
      const rows = await q.orderBy('id').limit(EXPORT_PAGE).execute();
      const aliases = await aliasesOf(db, rows.map((r) => r.id as string));
      const lines = rows.flatMap((r) => (aliases.get(r.id) ?? []).map((a) => csvLine([r.primary_address, a])));
      return { lines, last: rows.length === EXPORT_PAGE ? (rows.at(-1)!.id as string) : null };
    }));
  });

  // ---- groups (mail-enabled directory groups) ----
  const groups = '/api/v1/organizations/:orgId/groups';
  app.get(`${groups}/export`, {
    schema: {
      tags: ['groups'], security: [{ bearer: [] }], params: ORG, response: csvOk('text/csv'),
      description: `The organization's mail-enabled groups as CSV (columns ${GROUP_CSV_COLUMNS.join(', ')}; members: their addresses, `
        + 'managers: their logins, space-separated). A group comes after the groups it contains, so the file imports back in one pass.',
    },
  }, async (req, reply) => {
    const org = await readableOrg(db, req.principal, (req.params as any).orgId);
    const order = await groupsNestedFirst(db, req.principal, org.id);
    let next = 0;
    return sendCsv(reply, `groups-${org.id}`, csvStream(GROUP_CSV_COLUMNS, async () => {
      const ids = order.slice(next, next + EXPORT_PAGE);
      next += ids.length;
      if (ids.length === 0) return { lines: [], last: null };
      const rows = await db.selectFrom('mail_groups').innerJoin('groups', 'groups.id', 'mail_groups.group_id')
        .select(['mail_groups.group_id as id', 'groups.name as name', 'groups.display_name as display_name', 'groups.description as description',
          'mail_groups.primary_address as address', 'mail_groups.hidden as hidden', 'mail_groups.send_policy as send_policy'])
        .where('mail_groups.group_id', 'in', ids).execute();
      const byId = new Map(rows.map((r) => [r.id as string, r]));
      const members = await memberAddresses(db, ids);
      const managers = await managerLogins(db, ids);
      const lines = ids.map((id) => byId.get(id)).filter((r) => r !== undefined).map((r) => csvLine([
        r.name, r.address, (members.get(r.id) ?? []).join(' '), Number(r.hidden) === 1, r.send_policy, r.display_name, r.description ?? '',
        (managers.get(r.id) ?? []).join(' '),
      ]));
      return { lines, last: next < order.length ? 'more' : null };
    }));
  });

  app.post(`${groups}/import`, {
    schema: {
      tags: ['groups'], security: [{ bearer: [] }], params: ORG, body: importBody, response: { 202: ImportAccepted, ...errorResponses },
      description: `Create whole distribution groups from CSV (columns ${GROUP_IMPORT_COLUMNS.join(', ')}; name required; what GET …/groups/export writes imports back) `
        + 'or JSON {items:[{name, displayName?, description?, primaryAddress?, hiddenFromAddressBook?, sendPolicy?, members?, managers?}]}. '
        + 'One row = one group, created, mail-enabled (when it has an address), with its members and managers in one transaction, or not at all. '
        + 'members: space-separated ids, addresses or group names; a row may name only groups that exist already or that EARLIER rows create. '
        + 'managers: space-separated user logins or ids. One request with per-row results.',
    },
  }, async (req, reply) => {
    const org = await getLiveOrganization(db, req.principal, (req.params as any).orgId);
    // members and managers are resolved by each row's own transaction (groups-import.ts), so earlier rows' groups are found
    const items = typeof req.body === 'string'
      ? parseCsvTable(req.body, GROUP_IMPORT_COLUMNS, ['name']).map(groupRowToItem)
      : (req.body as { items: Record<string, unknown>[] }).items;
    return submitImport(req, reply, deps, org, GROUP_IMPORT_PROC, items);
  });

  app.post(`${groups}/members/import`, {
    schema: {
      tags: ['groups'], security: [{ bearer: [] }], params: ORG, body: importBody, response: { 202: ImportAccepted, ...errorResponses },
      description: `Add mail members to mail-enabled groups from CSV (columns ${GROUP_MEMBER_CSV_COLUMNS.join(', ')}: the group by address, name or id; the member by address or id) `
        + 'or JSON {items:[{groupId, memberId}]}. One request with per-row results.',
    },
  }, async (req, reply) => {
    const org = await getLiveOrganization(db, req.principal, (req.params as any).orgId);
    const items = typeof req.body === 'string'
      ? await resolveGroupMembers(db, org.id, parseCsvTable(req.body, GROUP_MEMBER_CSV_COLUMNS, GROUP_MEMBER_CSV_COLUMNS))
      : (req.body as { items: Record<string, unknown>[] }).items;
    return submitImport(req, reply, deps, org, GROUP_MAIL_PROCS.addGroupMailMember, items);
  });
}

/**
 * The organization's mail-enabled groups (ids), each after every group it contains (depth-first; nesting has
 * no cycles), ties in creation order. One small query of ids and group-in-group edges: an organization's
 * groups are counted in thousands at most, while their rows are read page by page.
 */
async function groupsNestedFirst(db: Db, p: Principal, orgId: string): Promise<string[]> {
  const ids = (await inScope(db.selectFrom('mail_groups').select('group_id as id'), p).where('org_id', '=', orgId).orderBy('group_id').execute()).map((r) => r.id as string);
  const edges = await db.selectFrom('mail_group_members').select(['group_id', 'member_id']).where('org_id', '=', orgId).where('member_kind', '=', 'group').orderBy('member_id').execute();
  const inner = new Map<string, string[]>();
  for (const e of edges) inner.set(e.group_id as string, [...(inner.get(e.group_id as string) ?? []), e.member_id as string]);
  const known = new Set(ids);
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id) || !known.has(id)) return;
    seen.add(id);
    for (const m of inner.get(id) ?? []) visit(m);
    out.push(id);
  };
  for (const id of ids) visit(id);
  return out;
}

/** The managers of each group as logins, sorted. */
async function managerLogins(db: Db, groupIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const rows = await db.selectFrom('group_managers').innerJoin('users', 'users.id', 'group_managers.user_id')
    .select(['group_managers.group_id as group_id', 'users.login as login']).where('group_managers.group_id', 'in', groupIds).orderBy('users.login').execute();
  for (const r of rows) out.set(r.group_id as string, [...(out.get(r.group_id as string) ?? []), r.login as string]);
  return out;
}

/** The members of each group as addresses (mailboxes and groups: primary address; contacts: external address), sorted. */
async function memberAddresses(db: Db, groupIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(groupIds.map((id) => [id, []]));
  if (groupIds.length === 0) return out;
  const rows = await db.selectFrom('mail_group_members').select(['group_id', 'member_id', 'member_kind']).where('group_id', 'in', groupIds).execute();
  const ids = (kind: string) => rows.filter((r) => r.member_kind === kind).map((r) => r.member_id as string);
  const addressOf = new Map<string, string>();
  const load = async (table: string, idCol: string, addrCol: string, list: string[]) => {
    for (let i = 0; i < list.length; i += LOOKUP_CHUNK) {
      for (const r of await db.selectFrom(table).select([`${idCol} as id`, `${addrCol} as address`]).where(idCol, 'in', list.slice(i, i + LOOKUP_CHUNK)).execute()) {
        addressOf.set(r.id as string, r.address as string);
      }
    }
  };
  await load('mailboxes', 'id', 'primary_address', ids('mailbox'));
  await load('contacts', 'id', 'external_address', ids('contact'));
  await load('mail_groups', 'group_id', 'primary_address', ids('group'));
  for (const r of rows) out.get(r.group_id)?.push(addressOf.get(r.member_id) ?? r.member_id);
  for (const list of out.values()) list.sort();
  return out;
}

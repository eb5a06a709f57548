import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { Errors } from '../core/errors.js';
import { isId } from '../core/ids.js';
import type { Engine, JobHandler } from '../engine/engine.js';
import { defineProcedure } from '../engine/procedure.js';
import { Id } from '../engine/http.js';
import type { Db } from '../store/db.js';
import { CHECK_CODES, type Finding } from '../resources/check.js';
import type { CheckExtension } from '../resources/check-routes.js';
import { doveadm, parseTab } from './doveadm.js';
import { readManifest } from './instance.js';
import { renderedDirs } from './follow.js';
import { flushAuthCache } from './auth-cache.js';

/**
 * `hmc check` for the data plane: compares the database with what each locally managed mail server's
 * Dovecot actually does (the rendered data planes under HMC_DATAPLANE_ROOT), read-only:
 *
 *   dataplane_user_unresolvable  an active mailbox placed on the server that Dovecot does not resolve
 *   dataplane_user_unexpected    a name Dovecot serves that no active mailbox of the server has
 *   dataplane_quota_rule_drift   Dovecot's limit for a mailbox is not its prohibitSendReceiveQuota (repair:
 *                                flush that Dovecot's auth cache, which holds answers up to its TTL: a change
 *                                made behind the engine's back, an UPDATE by hand, is seen at once; a drift that
 *                                stays after it is no cached answer: that data plane is not HMC's rendering)
 *   dataplane_usage_drift        Dovecot's quota counter differs from the mailbox's real size (repair:
 *                                `doveadm quota recalc`)
 *   dataplane_orphan_maildir     a mailbox directory under a store of the server that no mailbox owns
 *                                (repairable when its mailbox was purged: the directory is removed)
 *   dataplane_unreachable        doveadm could not be asked at all
 *
 * Names are those Dovecot knows a mailbox by (the user's login, else the primary address; dp_userdb_names);
 * sizes are compared in KiB, the unit doveadm reports. The repair is the procedure dataplane.repair: one
 * job per item, each re-checking before it acts (a directory is removed only if its mailbox is still gone).
 */

export const DATAPLANE_REPAIR = 'dataplane.repair';
export const DATAPLANE_REPAIR_JOB = 'dataplane.repair_item';

interface Plane {
  dir: string;
  serverId: string;
  conf: string;
  mailRoot: string;
}

/** The rendered data planes under `root` whose server still exists. */
async function planes(db: Db, root: string | undefined): Promise<Plane[]> {
  const out: Plane[] = [];
  for (const dir of renderedDirs(root)) {
    const m = readManifest(dir);
    const server = await db.selectFrom('mail_servers').select(['id', 'mail_root']).where('id', '=', m.server.id).executeTakeFirst();
    if (server) out.push({ dir, serverId: server.id, conf: m.dovecotConfig, mailRoot: server.mail_root });
  }
  return out;
}

const kib = (bytes: number) => Math.floor(bytes / 1024);

interface Expected {
  /** The mailbox, or the mail-enabled public folder (dataplane/public-folders.ts: a Dovecot user by its address). */
  mailboxId: string;
  folder?: boolean;
  orgId: string;
  storeId: string;
  name: string;
  quotaBytes: number;
}

async function expectedUsers(db: Db, serverId: string): Promise<Map<string, Expected>> {
  const rows = await db.selectFrom('mailboxes as m')
    .innerJoin('mailstores as s', 's.id', 'm.store_id')
    .innerJoin('dp_live_orgs as o', 'o.id', 'm.org_id')
    .leftJoin('users as u', (j) => j.onRef('u.id', '=', 'm.user_id').onRef('u.org_id', '=', 'm.org_id').on('u.enabled', '=', 1).on('u.state', '=', 'active'))
    .select(['m.id', 'm.org_id', 'm.store_id', 'm.primary_address', 'm.prohibit_send_receive_quota', 'u.login'])
    .where('s.server_id', '=', serverId).where('m.state', '=', 'active').where('m.enabled', '=', 1)
    .execute();
  const out = new Map<string, Expected>(rows.map((r: any) => {
    const name = String(r.login ?? r.primary_address).toLowerCase();
    return [name, { mailboxId: r.id, orgId: r.org_id, storeId: r.store_id, name, quotaBytes: Number(r.prohibit_send_receive_quota) }];
  }));
  const folders = await db.selectFrom('dp_public_folder_addresses').select(['address', 'folder_id', 'org_id', 'store_id', 'quota_bytes']).where('server_id', '=', serverId).execute();
  for (const f of folders as any[]) {
    out.set(String(f.address), { mailboxId: f.folder_id, folder: true, orgId: f.org_id, storeId: f.store_id, name: String(f.address), quotaBytes: Number(f.quota_bytes) });
  }
  return out;
}

const finding = (f: Omit<Finding, 'stored' | 'expected'> & { stored?: Finding['stored']; expected?: Finding['expected'] }): Finding =>
  ({ stored: null, expected: null, ...f });

/** Users, quota limits and usage of one server as Dovecot has them, against the database. */
async function checkUsers(db: Db, p: Plane): Promise<Finding[]> {
  const expected = await expectedUsers(db, p.serverId);
  const quota = await doveadm(p.conf, ['-f', 'tab', 'quota', 'get', '-A']);
  if (quota.code !== 0 && quota.code !== 68) {
    return [finding({ code: CHECK_CODES.dataplaneUnreachable, orgId: null, storeId: null, objectId: p.serverId, field: 'doveadm', repairable: false,
      message: `doveadm quota get -A on ${p.dir} exited ${quota.code}: ${quota.stderr.trim().slice(0, 300)}` })];
  }
  const status = await doveadm(p.conf, ['-f', 'tab', 'mailbox', 'status', '-A', 'vsize', '*']);
  const real = new Map<string, number>();
  for (const r of parseTab(status.stdout)) {
    const user = (r.username ?? '').toLowerCase();
    real.set(user, (real.get(user) ?? 0) + Number(r.vsize ?? 0));
  }
  const seen = new Set<string>();
  const out: Finding[] = [];
  for (const r of parseTab(quota.stdout)) {
    if ((r.type ?? '').toUpperCase() !== 'STORAGE') continue;
    const name = (r.username ?? '').toLowerCase();
    const e = expected.get(name);
    seen.add(name);
    if (!e) {
      out.push(finding({ code: CHECK_CODES.dataplaneUnexpectedUser, orgId: null, storeId: null, objectId: null, field: 'user', stored: name, repairable: false,
        message: `Dovecot on server ${p.serverId} serves ${name}, which no active mailbox placed there is known by` }));
      continue;
    }
    const limit = r.limit === '-' || r.limit === undefined ? null : Number(r.limit);
    // doveadm prints the limit in KiB, rounded: a quota that is not a whole number of KiB (6,000 bytes) shows as
    // either neighbour
    if (limit === null || limit < kib(e.quotaBytes) || limit > Math.ceil(e.quotaBytes / 1024)) {
      out.push(finding({ code: CHECK_CODES.dataplaneQuotaDrift, orgId: e.orgId, storeId: e.storeId, objectId: e.mailboxId, field: 'quota_kib', stored: limit, expected: kib(e.quotaBytes), repairable: true,
        message: `Dovecot limits ${name} to ${limit ?? 'nothing'} KiB, the ${e.folder ? "public folder's prohibitPostQuota" : "mailbox's prohibitSendReceiveQuota"} is ${kib(e.quotaBytes)} KiB` }));
    }
    const counted = Number(r.value);
    const actual = kib(real.get(name) ?? 0);
    if (real.has(name) && Math.abs(counted - actual) > 1) {
      // (a folder's recalculation is `doveadm quota recalc -u <address>`; the repair items name mailboxes)
      out.push(finding({ code: CHECK_CODES.dataplaneUsageDrift, orgId: e.orgId, storeId: e.storeId, objectId: e.mailboxId, field: 'usage_kib', stored: counted, expected: actual, repairable: !e.folder,
        message: `Dovecot counts ${counted} KiB for ${name}, its folders hold ${actual} KiB (quota recalc)` }));
    }
  }
  for (const [name, e] of expected) {
    if (seen.has(name)) continue;
    out.push(finding({ code: CHECK_CODES.dataplaneUserUnresolvable, orgId: e.orgId, storeId: e.storeId, objectId: e.mailboxId, field: 'user', expected: name, repairable: false,
      message: `${e.folder ? 'public folder' : 'mailbox'} ${e.mailboxId} (${name}) is placed on server ${p.serverId}, but its Dovecot does not resolve it` }));
  }
  return out;
}

/** Mailbox directories (`<mail_root>/<store>/<org>/<mailbox>`) under the server's stores that no mailbox owns. */
async function checkMaildirs(db: Db, p: Plane): Promise<Finding[]> {
  const stores = await db.selectFrom('mailstores').select('id').where('server_id', '=', p.serverId).where('purpose', '=', 'mailbox').execute();
  const out: Finding[] = [];
  for (const { id: storeId } of stores) {
    const storeDir = join(p.mailRoot, storeId);
    if (!existsSync(storeDir)) continue;
    for (const org of readdirSync(storeDir, { withFileTypes: true })) {
      if (!org.isDirectory() || !isId(org.name)) continue;
      const dirs = readdirSync(join(storeDir, org.name), { withFileTypes: true }).filter((d) => d.isDirectory() && isId(d.name)).map((d) => d.name);
      if (dirs.length === 0) continue;
      const rows = await db.selectFrom('mailboxes').select(['id', 'store_id', 'moving_from']).where('id', 'in', dirs).execute();
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const mailboxId of dirs) {
        const m = byId.get(mailboxId);
        if (m && (m.store_id === storeId || m.moving_from === storeId)) continue;
        out.push(finding({ code: CHECK_CODES.dataplaneOrphanMaildir, orgId: org.name, storeId, objectId: mailboxId, field: 'maildir', stored: join(storeDir, org.name, mailboxId), repairable: !m,
          message: m ? `${join(storeDir, org.name, mailboxId)} belongs to mailbox ${mailboxId}, which is on store ${m.store_id}` : `${join(storeDir, org.name, mailboxId)} belongs to no mailbox (purged): removable` }));
      }
    }
  }
  return out;
}

/** Every data plane finding for the servers rendered under `root` (none when no root is configured). */
export async function checkDataplanes(db: Db, root: string | undefined): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const p of await planes(db, root)) out.push(...(await checkUsers(db, p)), ...(await checkMaildirs(db, p)));
  return out;
}

const RepairItem = Type.Union([
  Type.Object({ action: Type.Literal('flush_auth_cache'), serverId: Id('srv') }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('recalc_quota'), serverId: Id('srv'), mailboxId: Id('mbx') }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('remove_maildir'), serverId: Id('srv'), storeId: Id('mst'), orgId: Id('org'), mailboxId: Id('mbx') }, { additionalProperties: false }),
]);
type RepairItemT =
  | { action: 'flush_auth_cache'; serverId: string }
  | { action: 'recalc_quota'; serverId: string; mailboxId: string }
  | { action: 'remove_maildir'; serverId: string; storeId: string; orgId: string; mailboxId: string };

/**
 * The repair items for the repairable findings of `checkDataplanes`: quota-rule drift (one auth-cache flush per
 * server, before the rest), usage drift, orphans of purged mailboxes.
 */
export async function repairItems(db: Db, findings: Finding[]): Promise<RepairItemT[]> {
  const items: RepairItemT[] = [];
  const flushed = new Set<string>();
  for (const f of findings.filter((x) => x.repairable && x.storeId && x.objectId)) {
    const store = await db.selectFrom('mailstores').select('server_id').where('id', '=', f.storeId!).executeTakeFirst();
    if (!store) continue;
    if (f.code === CHECK_CODES.dataplaneQuotaDrift && !flushed.has(store.server_id)) {
      flushed.add(store.server_id);
      items.unshift({ action: 'flush_auth_cache', serverId: store.server_id });
    }
    if (f.code === CHECK_CODES.dataplaneUsageDrift) items.push({ action: 'recalc_quota', serverId: store.server_id, mailboxId: f.objectId! });
    if (f.code === CHECK_CODES.dataplaneOrphanMaildir && f.orgId) items.push({ action: 'remove_maildir', serverId: store.server_id, storeId: f.storeId!, orgId: f.orgId, mailboxId: f.objectId! });
  }
  return items;
}

/** dataplane.repair: one provider job per item, in order per server (provider admins). */
export const dataplaneRepair = defineProcedure({
  id: DATAPLANE_REPAIR,
  input: Type.Object({ items: Type.Array(RepairItem, { minItems: 1, maxItems: 100_000 }) }, { additionalProperties: false }),
  minRole: 'provider_admin',
  async run(ctx, input) {
    const items = input.items as RepairItemT[];
    ctx.target({ type: 'mail_server', id: items[0]!.serverId, resellerId: null, orgId: null });
    for (const item of items) ctx.enqueue({ kind: DATAPLANE_REPAIR_JOB, payload: item, queueKey: `dataplane:${item.serverId}` });
    ctx.diff(null, { items: items.length });
    return { items: items.length };
  },
});

/** The repair jobs: each re-checks what it acts on, so a stale item does nothing. */
export function dataplaneRepairJobs(engine: Engine, root: string | undefined): Record<string, JobHandler> {
  return {
    [DATAPLANE_REPAIR_JOB]: {
      async run(payload) {
        const item = payload as RepairItemT;
        const db = engine.store.db;
        const plane = (await planes(db, root)).find((p) => p.serverId === item.serverId);
        if (!plane) throw Errors.backendFailed(`mail server ${item.serverId} has no data plane rendered under ${root ?? '(no HMC_DATAPLANE_ROOT)'}`, { retryable: false });
        if (item.action === 'flush_auth_cache') return flushAuthCache(plane.conf, plane.dir);
        if (item.action === 'recalc_quota') {
          const names = await db.selectFrom('dp_userdb_names as n').innerJoin('dp_userdb as u', (j) => j.onRef('u.name', '=', 'n.name').onRef('u.server_id', '=', 'n.server_id'))
            .select('n.name').where('u.mailbox_id', '=', item.mailboxId).where('n.server_id', '=', item.serverId).execute();
          for (const { name } of names) {
            const r = await doveadm(plane.conf, ['quota', 'recalc', '-u', String(name)]);
            if (r.code !== 0) throw Errors.backendFailed(`doveadm quota recalc -u ${name} exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`, { retryable: r.code === 75 });
          }
          return;
        }
        // remove_maildir: only while its mailbox is still gone (a restore or a move back would own it again)
        if (await db.selectFrom('mailboxes').select('id').where('id', '=', item.mailboxId).executeTakeFirst()) return;
        await rm(join(plane.mailRoot, item.storeId, item.orgId, item.mailboxId), { recursive: true, force: true });
      },
    },
  };
}

/** The data plane's part of `hmc check` (resources/check-routes.ts), for the servers rendered under `root`. */
export function dataplaneCheck(root: string): CheckExtension {
  return {
    check: (db) => checkDataplanes(db, root),
    async repair(db, findings) {
      const items = await repairItems(db, findings);
      return items.length === 0 ? null : { procedure: DATAPLANE_REPAIR, input: { items }, items: items.length };
    },
  };
}

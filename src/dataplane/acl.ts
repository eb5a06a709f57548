import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Errors } from '../core/errors.js';
import type { Engine, JobContext, JobHandler } from '../engine/engine.js';
import type { BillingEventSpec, JobSpec } from '../engine/procedure.js';
import { FULL_ACCESS_JOBS } from '../mail/full-access.js';
import type { Db } from '../store/db.js';
import { parseTab, type DoveadmResult } from './doveadm.js';
import { renderedDirs } from './follow.js';
import { readManifest } from './instance.js';
import { sharedMailboxesDict } from './render.js';

/**
 * Full access (mail/full-access.ts) made real in Dovecot: the ACL of every folder of a mailbox holds exactly
 * one entry per trustee, `user=<login>` with every right but admin (IMAP `lrwstipekx`), and nothing else (the
 * owner's rights come from the global ACL file, see render.ts). Trustees are the mailbox's mailbox_access
 * rows whose user is active in the mailbox's organization. A disabled trustee keeps its entry: it cannot log
 * in while disabled, and regains access when enabled without anything to converge.
 *
 * The job reads both sides and changes only the difference, so it is idempotent and repairs any drift:
 *   doveadm -c CONF -f tab mailbox list                  the folders
 *   doveadm -c CONF -f tab acl get FOLDER                current entries (those with the Global column empty)
 *   doveadm -c CONF acl set FOLDER user=LOGIN RIGHTS…    missing or different entries
 *   doveadm -c CONF acl delete FOLDER ID                 entries that are not wanted
 * on the Dovecot of the mail server the mailbox is placed on (store → server → the data plane rendered for it
 * under the data plane root), run as the mail uid with HOME = the mailbox's home and USER = its canonical
 * name (its enabled user's login, else its primary address: dp_userdb_names), with `-o
 * namespace/shared/disabled=yes`. No userdb lookup: a mailbox Dovecot does not serve right now (disabled,
 * deleted but retained, its tenant suspended) is converged all the same, so a revoke holds when it is served
 * again, and Dovecot need not be running. Every folder has its own ACL because Dovecot copies the parent's ACL
 * to a folder when it is created; folders created while the job runs are caught by listing again. Dovecot keeps
 * its trustee → owner index (acl_shared_dict, which LIST of Shared/ reads) in step by itself.
 *
 * Nothing is done when no data plane is rendered here for that server (no data plane root: the embedded
 * default), nor when the mailbox has no trustees and no ACL (no owner entry in that index).
 *
 * Jobs are enqueued (in the organization's queue) by grant and revoke (the procedures), and by the engine
 * follower below: a deleted user (its rows go with the purge, which runs first in that queue: every mailbox
 * of the organization with an ACL is converged) and a moved mailbox (Dovecot's copy to the new home does not
 * carry ACLs).
 */

/** Full access in Dovecot's right names, as `doveadm acl get` prints them (sorted): IMAP lrwstipekx, no admin. */
const RIGHTS = ['create', 'delete', 'expunge', 'insert', 'lookup', 'post', 'read', 'write', 'write-deleted', 'write-seen'].join(' ');
/** Passes over a mailbox's folders: the next one handles the folders created during the previous. */
const PASSES = 3;

export interface Plane {
  serverId: string;
  conf: string;
  mailRoot: string;
  mailUid: number;
  mailGid: number;
}

export const planesUnder = (root: string | undefined): Plane[] => renderedDirs(root).map((dir) => {
  const m = readManifest(dir);
  return { serverId: m.server.id, conf: m.dovecotConfig, mailRoot: m.mailRoot, mailUid: m.mailUid, mailGid: m.mailGid };
});

/** A mailbox as doveadm sees it without a userdb lookup. */
export interface Owner {
  plane: Plane;
  name: string;
  home: string;
  /** More `-o` settings (default: the shared namespace off). */
  options?: string[];
}

/** `doveadm` for one mailbox: as the mail uid, in its home, under its name, without the shared namespace. */
export function mailboxDoveadm(o: Owner, args: string[], ctx: JobContext): Promise<DoveadmResult> {
  const options = (o.options ?? ['namespace/shared/disabled=yes']).flatMap((x) => ['-o', x]);
  const argv = ['-c', o.plane.conf, '-o', 'stats_writer_socket_path=', ...options, ...args];
  return new Promise((resolve, reject) => {
    execFile('doveadm', argv, {
      uid: o.plane.mailUid, gid: o.plane.mailGid, cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: o.home, USER: o.name },
      signal: ctx.signal, timeout: 60_000, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        if (ctx.signal.aborted) return reject(Errors.unavailable('lease lost while converging ACLs', { retryable: true }));
        return reject(Errors.backendFailed(`could not run doveadm: ${err.message}`, { retryable: true, cause: err }));
      }
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

export function failed(o: Owner, what: string, r: DoveadmResult): never {
  throw Errors.backendFailed(`doveadm ${what} for ${o.name} exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`, { retryable: r.code === 75 });
}

/** Owner names in the plane's trustee → owner index (`shared/shared-boxes/<user/…|anyone>/<owner>` keys). */
function indexedOwners(plane: Plane): Set<string> {
  const file = sharedMailboxesDict(plane.mailRoot);
  const owners = new Set<string>();
  if (!existsSync(file)) return owners;
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const key = lines[i]!;
    if (key.startsWith('shared/shared-boxes/')) owners.add(key.slice(key.lastIndexOf('/') + 1));
  }
  return owners;
}

/** One folder's ACL entries to exactly `desired` (id → rights). */
export async function convergeFolder(o: Owner, folder: string, desired: Map<string, string>, ctx: JobContext): Promise<void> {
  const got = await mailboxDoveadm(o, ['-f', 'tab', 'acl', 'get', folder], ctx);
  if (got.code === 68) return; // the folder was deleted meanwhile
  if (got.code !== 0) failed(o, `acl get ${folder}`, got);
  const current = new Map(parseTab(got.stdout).filter((r) => r.global === '').map((r) => [r.id!, (r.rights ?? '').split(' ').filter(Boolean).sort().join(' ')]));
  for (const [id, rights] of desired) {
    if (current.get(id) === rights) continue;
    const r = await mailboxDoveadm(o, ['acl', 'set', folder, id, ...rights.split(' ')], ctx);
    if (r.code !== 0) failed(o, `acl set ${folder} ${id}`, r);
  }
  for (const id of current.keys()) {
    if (desired.has(id)) continue;
    const r = await mailboxDoveadm(o, ['acl', 'delete', folder, id], ctx);
    if (r.code !== 0 && r.code !== 68) failed(o, `acl delete ${folder} ${id}`, r);
  }
}

const depth = (folder: string) => (folder === 'INBOX' ? -1 : folder.split('/').length);

/** Every folder of the mailbox to `desired`. */
async function convergeFolders(o: Owner, desired: Map<string, string>, ctx: JobContext): Promise<void> {
  const done = new Set<string>();
  for (let pass = 0; pass < PASSES; pass++) {
    const list = await mailboxDoveadm(o, ['-f', 'tab', 'mailbox', 'list'], ctx);
    if (list.code !== 0) failed(o, 'mailbox list', list);
    const folders = parseTab(list.stdout).map((r) => r.mailbox ?? '').filter((f) => f && !done.has(f))
      .sort((a, b) => depth(a) - depth(b)); // parents first: a folder created meanwhile copies a corrected parent
    if (folders.length === 0) return;
    for (const f of folders) {
      await convergeFolder(o, f, desired, ctx);
      done.add(f);
    }
  }
}

/**
 * Mailbox `mailboxId`'s ACL to its trustees, on the locally rendered data plane of its server (if any).
 * `owners`: the index's owner names per server, when the caller has read them already.
 */
async function convergeMailboxAcl(db: Db, planes: Plane[], mailboxId: string, ctx: JobContext, owners?: Map<string, Set<string>>): Promise<void> {
  const m = await db.selectFrom('mailboxes as m')
    .innerJoin('mailstores as s', 's.id', 'm.store_id')
    .innerJoin('mail_servers as v', 'v.id', 's.server_id')
    .leftJoin('users as u', (j) => j.onRef('u.id', '=', 'm.user_id').onRef('u.org_id', '=', 'm.org_id'))
    .select(['m.id', 'm.org_id', 'm.store_id', 'm.primary_address', 's.server_id', 'v.mail_root', 'u.login', 'u.enabled', 'u.state'])
    .where('m.id', '=', mailboxId).executeTakeFirst();
  if (!m) return; // purged (its data goes with it) or not placed
  const plane = planes.find((p) => p.serverId === m.server_id);
  if (!plane) return;
  const trustees = await db.selectFrom('mailbox_access as a').innerJoin('users as u', 'u.id', 'a.trustee_user_id')
    .select('u.login').where('a.mailbox_id', '=', m.id).where('a.org_id', '=', m.org_id)
    .where('u.org_id', '=', m.org_id).where('u.state', '=', 'active').execute();
  const indexed = owners?.get(plane.serverId) ?? indexedOwners(plane);
  if (trustees.length === 0 && !indexed.has(String(m.primary_address)) && !(m.login && indexed.has(String(m.login)))) return;
  // the names and home of dp_userdb_names / dp_userdb
  const name = String(m.login && Number(m.enabled) === 1 && m.state === 'active' ? m.login : m.primary_address);
  const home = `${m.mail_root}/${m.store_id}/${m.org_id}/${m.id}`;
  await convergeFolders({ plane, name, home }, new Map(trustees.map((t) => [`user=${t.login}`, RIGHTS])), ctx);
}

/** Every mailbox of the organization with trustees or an ACL, on the locally rendered data planes. */
async function convergeOrganizationAcls(db: Db, planes: Plane[], orgId: string, ctx: JobContext): Promise<void> {
  const ids = new Set((await db.selectFrom('mailbox_access').select('mailbox_id').distinct().where('org_id', '=', orgId).execute()).map((r) => String(r.mailbox_id)));
  const owners = new Map(planes.map((p) => [p.serverId, indexedOwners(p)]));
  const boxes = await db.selectFrom('mailboxes as m').innerJoin('mailstores as s', 's.id', 'm.store_id')
    .leftJoin('users as u', (j) => j.onRef('u.id', '=', 'm.user_id').onRef('u.org_id', '=', 'm.org_id'))
    .select(['m.id', 'm.primary_address', 'u.login', 's.server_id']).where('m.org_id', '=', orgId).execute();
  for (const b of boxes) {
    const indexed = owners.get(String(b.server_id));
    if (indexed && (indexed.has(String(b.primary_address)) || (b.login && indexed.has(String(b.login))))) ids.add(String(b.id));
  }
  for (const id of ids) await convergeMailboxAcl(db, planes, id, ctx, owners);
}

/** The engine follower: the changes besides grant and revoke after which a mailbox's ACL may be wrong. */
export const followFullAccessChanges = (root: string | undefined) => (events: readonly BillingEventSpec[]): JobSpec[] => {
  // no data plane managed here: no ACL to converge
  if (!root) return [];
  const jobs = new Map<string, JobSpec>();
  for (const e of events) {
    if (!e.orgId) continue;
    // (not the undoing of a user's creation: the engine files a compensation's follower jobs as forward steps)
    const undone = (e.data as { compensation?: boolean } | undefined)?.compensation === true;
    if (e.objectType === 'user' && e.event === 'deleted' && !undone) {
      jobs.set(e.orgId, { kind: FULL_ACCESS_JOBS.organization, payload: { orgId: e.orgId }, queueKey: e.orgId });
    } else if (e.objectType === 'mailbox' && e.event === 'moved') {
      jobs.set(e.objectId, { kind: FULL_ACCESS_JOBS.mailbox, payload: { mailboxId: e.objectId }, queueKey: e.orgId });
    }
  }
  return [...jobs.values()];
};

/** The jobs, on the data planes rendered under `root` (none configured: nothing to do). */
export function fullAccessJobs(engine: Engine, root: string | undefined): Record<string, JobHandler> {
  return {
    [FULL_ACCESS_JOBS.mailbox]: {
      async run(payload, ctx) {
        const planes = planesUnder(root);
        if (planes.length > 0) await convergeMailboxAcl(engine.store.db, planes, (payload as { mailboxId: string }).mailboxId, ctx);
      },
    },
    [FULL_ACCESS_JOBS.organization]: {
      async run(payload, ctx) {
        const planes = planesUnder(root);
        if (planes.length > 0) await convergeOrganizationAcls(engine.store.db, planes, (payload as { orgId: string }).orgId, ctx);
      },
    },
  };
}

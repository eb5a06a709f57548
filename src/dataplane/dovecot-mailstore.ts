import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Errors } from '../core/errors.js';
import { isId } from '../core/ids.js';
import type { ProviderContext } from '../directory/ports.js';
import type { MailboxDataProvider, MailboxDataRef } from '../resources/ports.js';
import type { Db } from '../store/db.js';
import { renderedDirs, renderedPlane } from './follow.js';
import { reloadPostfix } from './instance.js';
import { flushAuthCaches } from './auth-cache.js';
import type { Manifest } from './render.js';

/**
 * Mailbox data on the data plane's Dovecot (issue 5 item 5): a move to another mailstore, on another mail
 * server or on the same one, merges the old home's maildir into the new home with doveadm and removes the
 * old home. Homes follow the views' layout, `<mail_root>/<store>/<org>/<mailbox>`; every mail server is a
 * data plane rendered on this host under the data plane root (`<root>/<server name>/dataplane.json`).
 *
 * When the copy job runs, the move procedure has already switched the routing (store_id): mail is being
 * delivered to the new home, while the old server still stores what was routed to it before (dp_userdb
 * resolves the mailbox there to the old home while moving_from is set). So that nothing is lost:
 *
 * 1. Between servers, every Postfix here is reloaded: its qmgr keeps the last route it resolved for 30 s
 *    (resolve_clnt.c's one-entry cache), which would go on sending the mailbox's mail to the old server.
 *    Every Dovecot here forgets its auth cache (auth-cache.ts): within one server, a cached userdb answer would
 *    go on delivering to the old home, and the drain (3) would never run dry.
 * 2. The user's sessions on the old server end (`doveadm kick <login>`): opened before the switch, they work
 *    on the old home (a client filing a copy in Sent); the client logs in again and reaches the new home.
 * 3. Drain: rename the old home to `<home>.moving`, so nothing is added to what is read (a late delivery
 *    recreates the home instead); `doveadm -c <target dovecot.conf> import maildir:<staged>/Maildir "" all`,
 *    run as the mail uid with HOME = the new home (so the configured `maildir:~/Maildir` is the new maildir);
 *    remove the staged copy; again while the home came back with mail in it.
 * 4. Wait `graceMs` for deliveries already under way to the old home (routed or resolved before step 1),
 *    then drain again. The job then clears moving_from and calls finishMove, which drains once more: by then
 *    nothing resolves the mailbox to the old home.
 *
 * Why `import`: it adds the old messages to the live maildir as new messages (their flags, keywords and
 * folders kept; on one filesystem hard links, so the maildir file name, Dovecot's GUID, too) without touching
 * what is already there. dsync cannot merge into a maildir that receives mail meanwhile: a two-way `sync`
 * refuses two independently created INBOXes (different mailbox GUIDs: "Remote lost mailbox GUID", exit 2,
 * nothing copied), `sync -1 -R` keeps the source's UIDs and so renumbers the messages already delivered to
 * the new home, which under concurrent LMTP deliveries left duplicate messages (Dovecot 2.3.19), and
 * `backup -R` would delete those deliveries. Import is not idempotent, hence the staging: a crash leaves the
 * staged copy, and the retry imports it again and then `doveadm deduplicate`s by GUID (across file systems
 * the copies get new GUIDs, so a crash in the middle of such an import can leave duplicates).
 *
 * No userdb lookup (no `-u`): a disabled mailbox or a suspended tenant (no userdb rows) moves too, the target
 * Dovecot need not be running, and no quota refuses the copy (the data fitted where it was). doveadm runs
 * with `mail_fsync=never` (fsync per message made a 10 000-message import 5 times slower); one `sync -f` of
 * the new home's file system makes it durable before the staged copy is removed.
 */

export interface DovecotMailstoreOptions {
  db: Db;
  /** Where the data planes are rendered (config.dataplaneRoot). */
  dataplaneRoot: string;
  /** How long deliveries routed to the old server before the reroute get to land (default 2 s). */
  graceMs?: number;
  /** Longest a single doveadm run may take (default 10 min). */
  doveadmTimeoutMs?: number;
}

/** doveadm kick: 68 = nobody was logged in, 75 = that Dovecot is not running (so nobody is). */
const KICK_NOBODY = new Set([0, 68, 75]);
/** A path a location string and the layout can carry (mail roots are validated likewise on input). */
const SAFE_PATH = /^(\/[A-Za-z0-9._@+=-]+)+$/;

interface Move {
  home: string;
  mailRoot: string;
  old: string;
  staged: string;
  target: Manifest;
  /** The old store's server's data plane (null: not rendered here). */
  source: Manifest | null;
  /** Both stores on one mail server: the route (its LMTP) stays, only the home changes. */
  sameServer: boolean;
}

export function createDovecotMailstore(opts: DovecotMailstoreOptions): MailboxDataProvider {
  const graceMs = opts.graceMs ?? 2000;
  const timeoutMs = opts.doveadmTimeoutMs ?? 10 * 60_000;

  /** The data plane rendered for mail server `serverId`, or null. */
  const planeOf = (serverId: string): Manifest | null => renderedPlane(opts.dataplaneRoot, serverId);

  async function serverOf(storeId: string): Promise<string> {
    const s = await opts.db.selectFrom('mailstores').select('server_id').where('id', '=', storeId).executeTakeFirst();
    if (!s) throw Errors.backendFailed(`mailstore ${storeId} is not registered`, { retryable: false });
    return s.server_id as string;
  }

  /** Run a command; resolves with its exit code (0, or the failure's), rejects only when it could not run. */
  function run(cmd: 'doveadm' | 'sync', args: string[], ctx: ProviderContext, as?: { uid: number; gid: number; home: string }): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve, reject) => {
      execFile(cmd, args, {
        signal: ctx.signal, timeout: timeoutMs, encoding: 'utf8', maxBuffer: 1024 * 1024, cwd: '/',
        ...(as ? { uid: as.uid, gid: as.gid, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: as.home, USER: 'hmc-move' } } : {}),
      }, (err, _out, stderr) => {
        if (!err) return resolve({ code: 0, stderr });
        if (ctx.signal.aborted) return reject(Errors.unavailable('lease lost during the copy', { retryable: true }));
        const spawnError = (err as NodeJS.ErrnoException).code;
        if (typeof spawnError === 'string') return reject(Errors.backendFailed(`could not run ${cmd} (${spawnError}): the data plane needs Postfix and Dovecot installed, and root`, { retryable: false, cause: err }));
        if (err.killed) return reject(Errors.backendFailed(`${cmd} ${args.slice(-3).join(' ')} killed after ${timeoutMs} ms`, { retryable: true }));
        resolve({ code: typeof err.code === 'number' ? err.code : 1, stderr });
      });
    });
  }

  /** doveadm as the mail uid for the mailbox whose home is `home` (no userdb lookup), failing on any error. */
  async function mailDoveadm(target: Manifest, home: string, args: string[], ctx: ProviderContext): Promise<void> {
    const { code, stderr } = await run('doveadm', ['-c', target.dovecotConfig, '-o', 'stats_writer_socket_path=', '-o', 'mail_fsync=never', ...args], ctx,
      { uid: target.mailUid, gid: target.mailGid, home });
    if (code !== 0) throw Errors.backendFailed(`doveadm ${args[0]} for ${home} exited ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`, { retryable: true });
  }

  /** Add the messages of `<staged>/Maildir` to the new home's maildir, durably. */
  async function importStaged(m: Move, ctx: ProviderContext, dedupe: boolean): Promise<void> {
    await mailDoveadm(m.target, m.home, ['import', `maildir:${join(m.staged, 'Maildir')}`, '', 'all'], ctx);
    if (dedupe) await mailDoveadm(m.target, m.home, ['deduplicate', 'mailbox', '*', 'all'], ctx);
    const { code, stderr } = await run('sync', ['-f', m.mailRoot], ctx);
    if (code !== 0) throw Errors.backendFailed(`sync -f ${m.mailRoot} exited ${code}: ${stderr.trim()}`, { retryable: true });
  }

  /**
   * Make every Postfix here route afresh: its qmgr keeps the last resolved route for 30 s, so mail for the
   * mailbox would go on reaching the old server that long. A reload restarts qmgr; one not running caches nothing.
   */
  async function rerouteMail(): Promise<void> {
    for (const dir of renderedDirs(opts.dataplaneRoot)) await reloadPostfix(dir);
  }

  /** End the mailbox user's sessions on the old server (they work on the old home); best effort. */
  async function kick(plane: Manifest | null, mailboxId: string, ctx: ProviderContext): Promise<void> {
    if (!plane) return;
    const user = await opts.db.selectFrom('mailboxes as m').innerJoin('users as u', 'u.id', 'm.user_id').select('u.login')
      .where('m.id', '=', mailboxId).executeTakeFirst();
    if (!user) return; // no login, no sessions
    const login = user.login as string;
    if (/[*?]/.test(login)) return; // kick takes a mask: such a login would end other users' sessions
    const { code, stderr } = await run('doveadm', ['-c', plane.dovecotConfig, 'kick', login], ctx);
    if (!KICK_NOBODY.has(code)) ctx.log.warn({ server: plane.server.name, code, stderr: stderr.trim() }, 'could not end the sessions on the old home');
  }

  const pause = (ms: number, signal: AbortSignal) => new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(Errors.unavailable('lease lost during the copy', { retryable: true }));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

  /** The homes of a move and the data planes involved; null when the old home has nothing (left) to move. */
  async function planMove(from: MailboxDataRef, to: MailboxDataRef): Promise<Move | null> {
    const home = homeOf(to);
    const old = homeOf(from);
    const staged = `${old}.moving`;
    if (old === home || (!existsSync(old) && !existsSync(staged))) return null; // no data yet: nothing to copy
    const [fromServer, toServer] = await Promise.all([serverOf(from.storeId), serverOf(to.storeId)]);
    const target = planeOf(toServer);
    if (!target) throw Errors.backendFailed(`no data plane rendered for mail server ${toServer} under ${opts.dataplaneRoot}`, { retryable: true });
    if (!existsSync(to.mailRoot)) throw Errors.backendFailed(`mail root ${to.mailRoot} does not exist yet (start the data plane of ${target.server.name})`, { retryable: true });
    // doveadm runs as the target's mail uid: it must be able to read the old home (checked before anything moves)
    const owner = statSync(existsSync(old) ? old : staged).uid;
    if (owner !== target.mailUid) throw Errors.backendFailed(`${old} is owned by uid ${owner}, not by mail uid ${target.mailUid} of server ${target.server.name}`, { retryable: false });
    const sameServer = fromServer === toServer;
    return { home, mailRoot: to.mailRoot, old, staged, target, source: sameServer ? target : planeOf(fromServer), sameServer };
  }

  /**
   * Import the old home through a staged copy nothing is added to, then remove it; again while the home came
   * back with mail (a delivery that was under way). Its Dovecot also recreates the home empty while it still
   * resolves the mailbox there (a quota check at RCPT): that holds nothing to keep.
   */
  async function drain(m: Move, ctx: ProviderContext): Promise<void> {
    if (existsSync(m.staged)) { // a crash left it, maybe imported in part
      if (await holdsMail(m.staged)) await importStaged(m, ctx, true);
      await rm(m.staged, { recursive: true, force: true });
    }
    for (let round = 0; existsSync(m.old); round++) {
      if (round === 5) throw Errors.backendFailed(`mail keeps arriving at ${m.old} after the move`, { retryable: true });
      await rename(m.old, m.staged);
      const hadMail = await holdsMail(m.staged);
      if (hadMail) await importStaged(m, ctx, false);
      await rm(m.staged, { recursive: true, force: true });
      if (!hadMail) break;
    }
  }

  /**
   * A copy that an earlier move out of `to`'s home left staged there (that move failed for good and was
   * undone, so the mailbox moves back: resources/moves.ts) goes back into the home first, deduplicated
   * (part of it may have reached the other home and comes back with this move: true = deduplicate after it).
   */
  async function recoverStaged(to: MailboxDataRef, ctx: ProviderContext): Promise<boolean> {
    const home = homeOf(to);
    const staged = `${home}.moving`;
    if (!existsSync(staged)) return false;
    const target = planeOf(await serverOf(to.storeId));
    if (!target) throw Errors.backendFailed(`no data plane rendered for the server of store ${to.storeId} under ${opts.dataplaneRoot}`, { retryable: true });
    if (await holdsMail(staged)) await importStaged({ home, mailRoot: to.mailRoot, old: home, staged, target, source: target, sameServer: true }, ctx, true);
    await rm(staged, { recursive: true, force: true });
    return true;
  }

  return {
    async moveMailbox(from, to, ctx) {
      const recovered = await recoverStaged(to, ctx);
      const m = await planMove(from, to);
      if (!m) return;
      const t0 = Date.now();
      if (!m.sameServer) await rerouteMail();
      // Dovecot may still hold the mailbox's old home in its auth cache (the request's own flush job can run after
      // this one): until it forgets it, LMTP keeps delivering there and the drain below would never run dry
      await flushAuthCaches(opts.dataplaneRoot);
      await kick(m.source, from.mailboxId, ctx);
      await drain(m, ctx);
      await pause(graceMs, ctx.signal);
      await drain(m, ctx);
      if (recovered) await mailDoveadm(m.target, m.home, ['deduplicate', 'mailbox', '*', 'all'], ctx);
      ctx.log.info({ mailbox: from.mailboxId, from: from.storeId, to: to.storeId, ms: Date.now() - t0 }, 'mailbox data moved');
    },
    async finishMove(from, to, ctx) {
      // moving_from was just cleared: a Dovecot that cached the old home for this mailbox must forget it
      // before the last drain, or a late delivery there would land in the old home after it (auth-cache.ts)
      await flushAuthCaches(opts.dataplaneRoot);
      const m = await planMove(from, to);
      if (m) await drain(m, ctx);
    },
    async purgeMailbox(at) {
      // its home, and a copy a crashed move left staged beside it
      const home = homeOf(at);
      for (const p of [home, `${home}.moving`]) await rm(p, { recursive: true, force: true });
    },
  };
}

/** Whether a home holds any message (Maildir++: cur/, new/ and tmp/ of INBOX and of each `.folder`). */
async function holdsMail(home: string): Promise<boolean> {
  const root = join(home, 'Maildir');
  const folders = ['', ...(await readdir(root).catch(() => [] as string[])).filter((f) => f.startsWith('.'))];
  for (const f of folders) {
    for (const sub of ['cur', 'new', 'tmp']) {
      if ((await readdir(join(root, f, sub)).catch(() => [])).length > 0) return true;
    }
  }
  return false;
}

/** The mailbox's home on a store: `<mail_root>/<store>/<org>/<mailbox>` (dp_userdb's layout). */
function homeOf(ref: MailboxDataRef): string {
  if (!isId(ref.orgId) || !isId(ref.mailboxId) || !isId(ref.storeId) || !SAFE_PATH.test(ref.mailRoot)) {
    throw Errors.backendFailed('mailbox reference is not made of ids under a mail root', { retryable: false });
  }
  return join(ref.mailRoot, ref.storeId, ref.orgId, ref.mailboxId);
}

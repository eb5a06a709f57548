import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, parse, relative, sep } from 'node:path';
import { Errors } from '../core/errors.js';
import type { Manifest } from './render.js';

/**
 * Private Postfix and Dovecot instances from a directory `hmc dataplane render` wrote (development, demos
 * and tests): everything they write stays under that directory, they bind only the rendered address and
 * ports, and only the pids in their own pid files are ever signalled. Must run as root (both masters start
 * as root and drop privileges). Measured gotchas (shared/reference/dataplane-facts.md §11): a daemonising
 * Dovecot keeps inherited pipes open, so its stdio goes to a file; orphaned daemons are reaped late, so
 * "gone" means no process or a zombie.
 */

export function readManifest(dir: string): Manifest {
  const p = join(dir, 'dataplane.json');
  if (!existsSync(p)) throw Errors.notFound(`${p} not found: run \`hmc dataplane render --out ${dir}\` first`);
  const m = JSON.parse(readFileSync(p, 'utf8')) as Manifest;
  if (m.version !== 1) throw Errors.invalidRequest(`${p}: unknown version ${String(m.version)}`);
  return m;
}

/** The pid in a pid file if that process is alive (not a zombie) and is the expected program. */
function livePid(pidFile: string, program: RegExp): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  return alive(pid) && program.test(commandOf(pid)) ? pid : null;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** True while the process exists and is not a zombie (kill -0 succeeds on zombies). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw Errors.unavailable(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

function tcpPorts(m: Manifest): number[] {
  return [m.ports.smtp, m.ports.lmtp, m.ports.imap, m.ports.pop3, m.ports.submission ?? null, m.agent?.reinjectPort ?? null, m.agent?.replyPort ?? null]
    .filter((p): p is number => p !== null);
}

/** Run a command with stdio appended to `logFile` (never a pipe: a daemon child would hold it open). */
function run(cmd: string, args: string[], logFile: string): Promise<number> {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
  } finally {
    closeSync(fd);
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function groupId(name: string): number {
  const line = execFileSync('getent', ['group', name], { encoding: 'utf8' });
  const gid = Number(line.split(':')[2]);
  if (!Number.isInteger(gid)) throw Errors.backendFailed(`group ${name} not found: run scripts/install-dataplane.sh`, { retryable: false });
  return gid;
}

/**
 * SQLite in WAL mode: Postfix reads as user `postfix` and must create or write `DB-wal` and `DB-shm`, so the
 * database directory and files become group `postfix`, group-writable (directory setgid, so new side files
 * keep the group). Other users gain nothing.
 */
export function grantSqliteAccess(dbPath: string): void {
  const gid = groupId('postfix');
  const dir = dirname(dbPath);
  chownSync(dir, statSync(dir).uid, gid);
  chmodSync(dir, (statSync(dir).mode & 0o7777) | 0o2070);
  for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) {
    if (!existsSync(f)) continue;
    chownSync(f, statSync(f).uid, gid);
    chmodSync(f, (statSync(f).mode & 0o7777) | 0o060);
  }
}

/** Every directory above `path` must let other users through (the postfix user, the mail uid). */
function assertTraversable(path: string, who: string): void {
  const root = parse(path).root;
  let cur = root;
  for (const part of relative(root, dirname(path)).split(sep).filter(Boolean)) {
    cur = join(cur, part);
    if ((statSync(cur).mode & 0o001) === 0) {
      throw Errors.invalidRequest(`${cur} is not searchable by other users, so ${who} cannot reach ${path} (chmod o+x ${cur})`);
    }
  }
}

/** Create the mail root owned by the mail uid; an existing one must already be owned by it. */
function prepareMailRoot(m: Manifest): void {
  if (!existsSync(m.mailRoot)) {
    const first = mkdirSync(m.mailRoot, { recursive: true, mode: 0o755 });
    // own what was just created, from the first new directory down
    let p = m.mailRoot;
    const made: string[] = [];
    while (first && p.length >= first.length) {
      made.push(p);
      p = dirname(p);
    }
    for (const d of made) chownSync(d, m.mailUid, m.mailGid);
  }
  const st = statSync(m.mailRoot);
  if (st.uid !== m.mailUid) throw Errors.invalidRequest(`mail root ${m.mailRoot} must be owned by the mail uid: chown ${m.mailUid}:${m.mailGid} ${m.mailRoot}`);
  assertTraversable(m.mailRoot, `mail uid ${m.mailUid}`);
}

export interface UpResult {
  alreadyUp: boolean;
  ms: number;
  ports: number[];
}

/** Start the instances rendered in `dir` and wait until every port accepts. On failure, stops what started. */
export async function up(dir: string, opts: { timeoutMs?: number } = {}): Promise<UpResult> {
  const t0 = Date.now();
  const m = readManifest(dir);
  const ports = tcpPorts(m);
  const dovecotPid = livePid(m.dovecotPidFile, /dovecot/);
  const postfixPid = livePid(m.postfixPidFile, /master/);
  if (dovecotPid && postfixPid) return { alreadyUp: true, ms: Date.now() - t0, ports };
  if (process.getuid?.() !== 0) throw Errors.invalidRequest('hmc dataplane up must run as root (Postfix and Dovecot masters start as root)');
  mkdirSync(m.logDir, { recursive: true });
  for (const d of ['run', 'state']) mkdirSync(join(dirname(m.dovecotConfig), d), { recursive: true, mode: 0o755 });
  // the queue directory must exist (Postfix makes its subdirectories); data_directory is made by Postfix, owned by postfix
  mkdirSync(dirname(dirname(m.postfixPidFile)), { recursive: true, mode: 0o755 });
  assertTraversable(m.postfixConfigDir, 'the postfix user');
  prepareMailRoot(m);
  if (m.sqlitePath) {
    grantSqliteAccess(m.sqlitePath);
    assertTraversable(dirname(m.sqlitePath), 'the postfix user');
  }
  const startLog = join(m.logDir, 'start.log');
  try {
    if (!dovecotPid) {
      const code = await run('dovecot', ['-c', m.dovecotConfig], startLog);
      if (code !== 0) throw Errors.backendFailed(`dovecot exited with ${code}:\n${tail(startLog)}\n${tail(join(m.logDir, 'dovecot.log'))}`, { retryable: false });
    }
    if (!postfixPid) {
      const code = await run('postfix', ['-c', m.postfixConfigDir, 'start'], startLog);
      if (code !== 0) throw Errors.backendFailed(`postfix start exited with ${code}:\n${tail(startLog)}\n${tail(join(m.logDir, 'postfix.log'))}`, { retryable: false });
    }
    await waitFor(`ports ${ports.join(', ')} on ${m.listen}`, async () => (await Promise.all(ports.map((p) => portOpen(m.listen, p)))).every(Boolean), opts.timeoutMs ?? 30_000);
  } catch (e) {
    await down(dir).catch(() => {});
    throw e;
  }
  return { alreadyUp: false, ms: Date.now() - t0, ports };
}

export interface DownResult {
  stopped: string[];
  ms: number;
}

/** Stop the instances rendered in `dir` (only the pids in its own pid files) and wait until the ports close. */
export async function down(dir: string, opts: { timeoutMs?: number } = {}): Promise<DownResult> {
  const t0 = Date.now();
  const m = readManifest(dir);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const stopped: string[] = [];
  const postfixPid = livePid(m.postfixPidFile, /master/);
  const dovecotPid = livePid(m.dovecotPidFile, /dovecot/);
  if (postfixPid) {
    mkdirSync(m.logDir, { recursive: true });
    await run('postfix', ['-c', m.postfixConfigDir, 'stop'], join(m.logDir, 'start.log')).catch(() => 1);
    stopped.push('postfix');
  }
  // Postfix first: a Dovecot master signalled right after start can take ~5 s to stop its fresh children
  if (dovecotPid) {
    try {
      process.kill(dovecotPid, 'SIGTERM');
    } catch {
      // already gone
    }
    stopped.push('dovecot');
  }
  const pids = [postfixPid, dovecotPid].filter((p): p is number => p !== null);
  try {
    await waitFor('the masters to exit', () => pids.every((p) => !alive(p)), timeoutMs);
  } catch {
    for (const p of pids.filter(alive)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await waitFor('the masters to exit after SIGKILL', () => pids.every((p) => !alive(p)), 5000);
  }
  const ports = tcpPorts(m);
  await waitFor(`ports ${ports.join(', ')} to close`, async () => (await Promise.all(ports.map((p) => portOpen(m.listen, p)))).every((o) => !o), timeoutMs);
  return { stopped, ms: Date.now() - t0 };
}

/**
 * Make a running Postfix drop what its processes remember: `postfix reload` (new processes, same queue).
 * Needed after a domain changes class (accepted, removed, its tenant suspended or resumed): smtpd keeps
 * each address's resolved class in a per-process cache that outlives SMTP sessions, so without a reload a
 * long-lived smtpd would go on relaying-denied a domain just accepted, or accepting one just suspended
 * (its addresses are refused all the same: they leave the mailbox and alias maps at once). Returns false
 * when Postfix is not running there.
 */
export async function reloadPostfix(dir: string, opts: { timeoutMs?: number } = {}): Promise<boolean> {
  const m = readManifest(dir);
  const master = livePid(m.postfixPidFile, /master/);
  if (!master) return false;
  // the reload is asynchronous: the old smtpd processes leave when the master tells them, so wait for them
  const old = [...childrenNamed(master, 'smtpd'), ...childrenNamed(master, 'trivial-rewrite')];
  const log = join(m.logDir, 'start.log');
  const code = await run('postfix', ['-c', m.postfixConfigDir, 'reload'], log);
  if (code !== 0) throw Errors.backendFailed(`postfix reload exited with ${code}:\n${tail(log)}`, { retryable: true });
  await waitFor('the old smtpd and trivial-rewrite processes to exit after the reload', () => old.every((p) => !alive(p)), opts.timeoutMs ?? 10_000);
  return true;
}

/** Pids of the live children of `parent` whose command name is `name` (from /proc). */
function childrenNamed(parent: number, name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (comm === name && Number(ppid) === parent && state !== 'Z') pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

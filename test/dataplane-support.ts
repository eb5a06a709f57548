import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { ImapFlow } from 'imapflow';
import { main } from '../src/cli/main.js';
import { fakeIo } from '../src/cli/fake-io.js';
import type { Manifest } from '../src/dataplane/render.js';
import type { TestPlatform } from './support.js';

export { freePorts } from './ports.js';

/**
 * Real data planes for tests: private Postfix and Dovecot instances (Debian packages, installed by
 * scripts/install-dataplane.sh) rendered from the test platform's database through the CLI, on 127.0.0.1
 * and free high ports, plus an SMTP sink standing in for the rest of the internet (the relayhost).
 */

export const dataplaneSkip: string | false = !['/usr/sbin/postfix', '/usr/sbin/dovecot'].every((p) => existsSync(p))
  ? 'Postfix/Dovecot not installed (scripts/install-dataplane.sh)'
  : process.getuid?.() !== 0 ? 'needs root (the masters start as root)' : false;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A scratch directory the postfix user and the mail uid can pass through (mkdtemp makes 0700). */
export function workDir(): { path: string; remove(): void } {
  const path = mkdtempSync('/tmp/hmc-dp-');
  chmodSync(path, 0o755);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Subjects in `folder` (default INBOX) of `user`, logging in over IMAP with its password. */
export async function folderSubjects(port: number, user: string, pass: string, folder = 'INBOX'): Promise<string[]> {
  const client = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user, pass }, logger: false });
  await client.connect();
  try {
    const lock = await client.getMailboxLock(folder);
    try {
      const subjects: string[] = [];
      if ((client.mailbox && client.mailbox.exists) || 0) {
        for await (const msg of client.fetch('1:*', { envelope: true })) subjects.push(msg.envelope?.subject ?? '');
      }
      return subjects;
    } finally {
      lock.release();
    }
  } finally {
    await client.logout().catch(() => {});
  }
}

/** Poll until `check` holds (delivery is asynchronous: queue, then LMTP); returns its last value. */
export async function eventually<T>(what: string, get: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

export interface SunkMessage {
  from: string;
  to: string[];
  raw: string;
}

/**
 * The internet: an SMTP server on 127.0.0.1 that keeps every message it is given (Postfix's relayhost), except
 * for recipients whose local part starts with `refuse-`: those it refuses (550 at RCPT), so Postfix bounces them.
 */
export async function startSink(): Promise<{ port: number; messages: SunkMessage[]; close(): Promise<void> }> {
  const messages: SunkMessage[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, done) {
      if (address.address.startsWith('refuse-')) done(Object.assign(new Error(`5.1.1 <${address.address}> no such user here`), { responseCode: 550 }));
      else done();
    },
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const env = session.envelope;
        messages.push({ from: env.mailFrom ? env.mailFrom.address : '', to: env.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        done();
      });
    },
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res());
  });
  const port = (server.server.address() as { port: number }).port;
  return { port, messages, close: () => new Promise<void>((r) => server.close(() => r())) };
}

export interface RunningDataplane {
  dir: string;
  manifest: Manifest;
  stop(): Promise<void>;
}

/**
 * Render mail server `server` through the CLI (as an operator would) into `dir` and start it. `postfix`:
 * main.cf settings changed with postconf after the render, as an operator may (e.g. a test that waits for
 * every message shortens Postfix's retry of deferred mail from its 5-10 minutes).
 */
export async function startDataplane(t: TestPlatform, server: string, dir: string, args: string[], opts: { postfix?: Record<string, string> } = {}): Promise<RunningDataplane> {
  const io = fakeIo({ env: { HMC_DATA_DIR: t.config.dataDir, ...(t.tdb.url ? { HMC_DATABASE_URL: t.tdb.url } : {}) } });
  const code = await main(['dataplane', 'render', '--server', server, '--out', dir, '--plaintext-auth', '--no-auth-penalty', '--json', ...args], io);
  if (code !== 0) throw new Error(`dataplane render failed (${code}): ${io.errors()}`);
  const manifest = JSON.parse(io.output()) as Manifest;
  const settings = Object.entries(opts.postfix ?? {}).map(([k, v]) => `${k}=${v}`);
  if (settings.length > 0) execFileSync('postconf', ['-c', join(dir, 'postfix/etc'), '-e', ...settings]);
  // through the CLI, as an operator starts and stops them
  const cli = async (verb: 'up' | 'down') => {
    const out = fakeIo();
    const rc = await main(['dataplane', verb, '--dir', dir, '--json'], out);
    if (rc !== 0) throw new Error(`hmc dataplane ${verb} --dir ${dir} failed (${rc}): ${out.errors()}`);
    return JSON.parse(out.output()) as Record<string, unknown>;
  };
  const started = await cli('up');
  if (started.dir !== dir || !Array.isArray(started.ports)) throw new Error(`hmc dataplane up answered ${JSON.stringify(started)}`);
  return { dir, manifest, stop: async () => void (await cli('down')) };
}

/** Where a mail server's logs are, for a failing assertion's message. */
export const logsOf = (dir: string) => join(dir, 'log');

/** Register mail server `name` (LMTP and IMAP on these ports) with a mailbox store and a public-folder store. */
export async function registerMailServer(t: TestPlatform, name: string, mailRoot: string, ports: { lmtp: number; imap: number }): Promise<{ id: string }> {
  const srv = await t.ok('POST', '/api/v1/mail-servers', { name, lmtpEndpoint: `127.0.0.1:${ports.lmtp}`, imapEndpoint: `127.0.0.1:${ports.imap}`, mailRoot });
  await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: `${name}-store`, capacityBytes: 2 ** 50 });
  await t.ok('POST', `/api/v1/mail-servers/${srv.id}/stores`, { name: `${name}-public`, purpose: 'public_folder', capacityBytes: 2 ** 50 });
  return srv;
}

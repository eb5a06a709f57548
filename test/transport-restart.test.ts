import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { DIALECTS } from '../src/store/testing.js';
import { startTestPlatform, type TestPlatform } from './support.js';
import { setupMailOrg, type MailOrg } from './mail-support.js';
import { dataplaneSkip, eventually, folderSubjects, freePorts, registerMailServer, sleep, startDataplane, startSink, workDir, type RunningDataplane } from './dataplane-support.js';

/**
 * `hmc transport` as an operator runs it (its own process, next to Postfix), stopped and killed while mail
 * flows: Postfix keeps what the agent did not take and hands it over again, so nothing is lost; a graceful
 * stop (SIGTERM) finishes what it took, a kill (SIGKILL) may make Postfix send a message twice (SMTP's
 * at-least-once), never more often than the agent had messages in hand.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'src/cli/main.ts');
const SECRET = 'restart-test-secret-0123456789abcdefgh';
const tag = () => randomBytes(4).toString('hex');
/** Postfix's hmc-agent transport runs at most this many deliveries to the agent at once (render.ts maxproc). */
const AGENT_MAXPROC = 20;

for (const dialect of DIALECTS) {
  describe(`hmc transport: restarts and kills lose no mail (${dialect})`, { skip: dataplaneSkip }, () => {
    let t: TestPlatform;
    let work: ReturnType<typeof workDir>;
    let sink: Awaited<ReturnType<typeof startSink>>;
    let dp: RunningDataplane | undefined;
    let o: MailOrg;
    let alice: string;
    const password = `pw-${tag()}`;
    let ports: { smtp: number; imap: number; http: number; submission: number };
    let agent: ChildProcess | null = null;
    let output = '';

    function startAgent(): Promise<void> {
      const env = {
        ...process.env, HMC_DATA_DIR: t.config.dataDir, HMC_TRANSPORT_SECRET: SECRET, HMC_LOG_LEVEL: 'warn',
        ...(t.tdb.url ? { HMC_DATABASE_URL: t.tdb.url } : {}),
      };
      const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'transport', '--dir', dp!.dir, '--http', `127.0.0.1:${ports.http}`], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      agent = child;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`hmc transport did not start: ${output}`)), 60_000);
        const seen = (d: Buffer) => {
          output += d;
          if (/transport agents running/.test(output)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout!.on('data', seen);
        child.stderr!.on('data', seen);
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`hmc transport exited with ${code}: ${output}`));
        });
      });
    }

    async function stopAgent(signal: NodeJS.Signals): Promise<number | null> {
      const child = agent;
      agent = null;
      if (!child || child.exitCode !== null) return child?.exitCode ?? null;
      child.removeAllListeners('exit');
      const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill(signal);
      return await exit;
    }

    /** Postfix's queue as `postqueue -j` lists it. */
    const queued = (): { queue_name: string }[] =>
      execFileSync('postqueue', ['-c', dp!.manifest.postfixConfigDir, '-j'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const flush = () => execFileSync('postqueue', ['-c', dp!.manifest.postfixConfigDir, '-f']);
    const subjects = () => folderSubjects(ports.imap, alice, password);

    /** `n` messages (subjects `<prefix>-<i>`) over one pooled nodemailer transport; resolves when all were accepted. */
    async function sendAll(transport: Parameters<typeof nodemailer.createTransport>[0], prefix: string, n: number, mail: (subject: string) => Record<string, string>): Promise<string[]> {
      const s = nodemailer.createTransport(transport);
      const list = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      try {
        await Promise.all(list.map((subject) => s.sendMail({ subject, ...mail(subject) })));
      } finally {
        s.close();
      }
      return list;
    }

    /** Mail alice submits (authenticated) to the outside: the agent's submission input, then the relayhost (the sink). */
    const submitMany = (prefix: string, n: number) =>
      sendAll({ host: '127.0.0.1', port: ports.submission, secure: false, ignoreTLS: true, auth: { user: alice, pass: password }, pool: true, maxConnections: 2 }, prefix, n,
        (subject) => ({ from: alice, to: 'partner@outside.example', text: `submitted ${subject}\n` }));
    const relayed = () => sink.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1]?.trim() ?? '');

    /** MX mail to alice from outside: her answering auto-reply routes it through the agent's delivery input. */
    const sendMany = (prefix: string, n: number) =>
      sendAll({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 }, prefix, n,
        (subject) => ({ from: 'sender@remote.example', to: alice, text: `message ${subject}\n${'x'.repeat(2000)}` }));

    before(async () => {
      work = workDir();
      const [smtp, lmtp, imap, agentMx, agentSub, reinject, reply, http, agentDeliver, submission] = (await freePorts(10)) as [number, number, number, number, number, number, number, number, number, number];
      ports = { smtp, imap, http, submission };
      t = await startTestPlatform(dialect, { config: { port: 0, transportSecret: SECRET } });
      sink = await startSink();
      await registerMailServer(t, 'dp-restart', join(work.path, 'mail'), { lmtp, imap });
      o = await setupMailOrg(t, 'rst', { defaultStores: false });
      alice = `alice@${o.domainName}`;
      const u = await t.ok('POST', `${o.orgUrl}/users?wait=true`, { login: alice, password });
      const mb = await t.ok('POST', `${o.orgUrl}/mailboxes?wait=true`, { kind: 'user', userId: u.id, planId: o.mailboxPlanId });
      // an answering auto-reply routes alice's mail through the agent (outsiders get none: audience none)
      await t.ok('PUT', `${o.orgUrl}/mailboxes/${mb.id}/auto-reply`, { mode: 'on', internalMessage: 'away', externalMessage: 'away', externalAudience: 'none' }, o.orgAdmin);
      dp = await startDataplane(t, 'dp-restart', join(work.path, 'dp-restart'), [
        '--smtp-port', String(smtp), '--submission-port', String(submission), '--relayhost', `[127.0.0.1]:${sink.port}`,
        '--agent-port', String(agentMx), '--agent-submission-port', String(agentSub), '--agent-deliver-port', String(agentDeliver), '--reinject-port', String(reinject), '--reply-port', String(reply),
      ]);
    });
    after(async () => {
      try {
        await stopAgent('SIGKILL');
        await dp?.stop();
      } finally {
        await sink?.close();
        await t?.close();
        work?.remove();
      }
    });

    test('with the agent down Postfix keeps the mail queued; started, the agent takes all of it; health and metrics answer', async () => {
      const list = await sendMany(`down-${tag()}`, 10);
      await eventually('10 messages deferred in the queue', async () => queued(), (q) => q.length === 10);
      assert.deepEqual((await subjects()).filter((s) => list.includes(s)), [], 'nothing delivered around the agent');
      await startAgent();
      const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
      assert.equal(health.status, 200);
      await eventually('/readyz', async () => (await fetch(`http://127.0.0.1:${ports.http}/readyz`)).status, (s) => s === 200);
      flush();
      const got = await eventually('all 10 delivered', subjects, (l) => list.every((s) => l.includes(s)), 60_000);
      for (const s of list) assert.equal(got.filter((x) => x === s).length, 1, `${s} once`);
      assert.equal(queued().length, 0);
      const metrics = await (await fetch(`http://127.0.0.1:${ports.http}/metrics`)).text();
      assert.match(metrics, /hmc_transport_messages_total\{input="deliver",outcome="passed"\} (1\d|[2-9]\d)/);
      assert.match(metrics, /hmc_domain_cache_domains [1-9]/);
    });

    test('SIGTERM while mail flows: the agent finishes what it took, the rest waits in Postfix; after a restart every message is there exactly once', async () => {
      const prefix = `term-${tag()}`;
      const sending = sendMany(prefix, 60);
      await eventually('some delivered', subjects, (l) => l.some((s) => s.startsWith(prefix)), 60_000);
      assert.equal(await stopAgent('SIGTERM'), 0, `graceful exit: ${output}`);
      const list = await sending;
      await startAgent();
      flush();
      const got = await eventually('all 60 delivered', async () => { flush(); return await subjects(); }, (l) => list.every((s) => l.includes(s)), 90_000);
      for (const s of list) assert.equal(got.filter((x) => x === s).length, 1, `${s} exactly once`);
    });

    test('SIGKILL mid-stream: nothing lost, delivered or submitted; a duplicate only for a message the agent had in hand', async () => {
      const prefix = `kill-${tag()}`;
      const sending = sendMany(prefix, 60);
      const submitting = submitMany(`${prefix}-sub`, 30);
      await eventually('some delivered', subjects, (l) => l.some((s) => s.startsWith(prefix)), 60_000);
      await stopAgent('SIGKILL');
      const list = await sending;
      const subList = await submitting;
      await sleep(200);
      await startAgent();
      const got = await eventually('all 60 delivered', async () => { flush(); return await subjects(); }, (l) => list.every((s) => l.includes(s)), 90_000);
      const out = await eventually('all 30 submitted relayed', async () => { flush(); return relayed(); }, (l) => subList.every((s) => l.includes(s)), 90_000);
      const extra = list.reduce((n, s) => n + got.filter((x) => x === s).length - 1, 0) + subList.reduce((n, s) => n + out.filter((x) => x === s).length - 1, 0);
      // each of the agent's inputs (deliveries, submissions) holds at most AGENT_MAXPROC messages at a time
      assert.ok(extra <= 2 * AGENT_MAXPROC, `${extra} duplicates, at most the ${2 * AGENT_MAXPROC} messages in hand`);
    });
  });
}

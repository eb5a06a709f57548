/**
 * Transport agent benchmark (issue 6): MESSAGES messages through Postfix → LMTP → Dovecot with HMC's transport
 * agent in the mail path, against the same servers without it, alternating in the same run; throughput ratio
 * (target ≥ 0.9) and the latency the agent adds. Run through `npm run bench -- --suite transport` (root). Not a
 * test: nothing is asserted. JSON to stdout and .bench/transport-last.json; see bench/README.md.
 *
 * The agent takes only the mail that needs it (transport/agent.ts): submitted mail, MX mail bearing a stamp, and
 * deliveries to mailboxes whose auto-reply answers. The benchmark's mail comes from outside through the MX, so
 * what it costs depends on how many recipients have an auto-reply on:
 * - direct: rendered without the agent (no filter, no agent route in the transport map);
 * - agent: rendered with the agent, REPLY_SHARE of the mailboxes (default 10%, a holiday season) with an
 *   auto-reply on, audience all (their mail goes through the agent, which delivers it over LMTP, looks up the
 *   settings and claims the once-per-period reply: one reply per mailbox, then a repeated claim per message);
 * - every: the same with every mailbox's auto-reply on: every message through the agent (the worst case);
 * - loop: the old design's ceiling: every MX message through an after-queue content filter pointed straight back
 *   at the reinjection listener (the second queue pass alone, no agent).
 * Latency is Postfix's own `delay=` (queue arrival → delivered, 10 ms resolution) of the delivery that ended in
 * the mailbox: the LMTP delivery's, or the agent's (which answers once its own LMTP delivery is done).
 */
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Dialect } from '../src/store/db.js';
import { renderDataplane, type Manifest } from '../src/dataplane/render.js';
import { down, reloadPostfix, up } from '../src/dataplane/instance.js';
import { doveadm } from '../src/dataplane/doveadm.js';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { startTestPlatform } from '../test/support.js';
import { freePorts } from '../test/dataplane-support.js';
import { delivered, fileSize, provision, readFrom, send, type Mailbox } from './dataplane.js';
import { machineInfo, progress, round, summarize, until } from './lib.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

const { values: opt } = parseArgs({
  options: {
    suite: { type: 'string' },
    db: { type: 'string', default: 'both' },
    messages: { type: 'string', default: '1000' },
    sessions: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '2' },
    'reply-share': { type: 'string', default: '0.1' },
    'idle-messages': { type: 'string', default: '50' },
  },
  // the suites share the command line (transport.ts imports dataplane.ts): another suite's option values pass
  allowPositionals: true,
  strict: false,
});
const MESSAGES = Number(opt.messages);
const SESSIONS = Number(opt.sessions);
const WARMUP = Number(opt.warmup);
const ROUNDS = Number(opt.rounds);
const REPLY_SHARE = Number(opt['reply-share']);
const IDLE_MESSAGES = Number(opt['idle-messages']);

type Variant = 'direct' | 'agent' | 'every' | 'loop';

/** Postfix's per-message delays (ms) of the deliveries into mailboxes: over LMTP, or through the agent's hmcdeliver transport. */
function delays(log: string): { sent: number[]; deferred: number } {
  const sent: number[] = [];
  let deferred = 0;
  for (const line of log.split('\n')) {
    const m = /\/(lmtp|hmcdeliver\/smtp)\[\d+\]: (\w+): to=<[^>]*>.* delay=([\d.]+).* status=(\w+)/.exec(line);
    if (!m) continue;
    if (m[4] !== 'sent') deferred++;
    else sent.push(Number(m[3]) * 1000);
  }
  return { sent, deferred };
}

/**
 * Latency without load: IDLE_MESSAGES messages to one mailbox (the first, whose auto-reply is on in the agent and
 * every variants), one at a time, each timed from the SMTP connect to its file in the maildir (ms, polled every ms).
 */
async function idleLatency(smtpPort: number, mb: Mailbox): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < IDLE_MESSAGES; i++) {
    const before = delivered([mb]);
    const t0 = performance.now();
    const c = new SMTPConnection({ host: '127.0.0.1', port: smtpPort, ignoreTLS: true, name: 'bench.test' });
    await new Promise<void>((res, rej) => {
      c.once('error', rej);
      c.connect(() => res());
    });
    await new Promise<void>((res, rej) => c.send({ from: 'idle@remote.example', to: [mb.login] }, `From: <idle@remote.example>\r\nTo: <${mb.login}>\r\nSubject: idle ${i}\r\nMessage-ID: <idle.${i}.${Date.now()}@remote.example>\r\n\r\n${'x'.repeat(76).concat('\r\n').repeat(13)}`, (e) => (e ? rej(e) : res())));
    c.quit();
    if (!(await until(async () => delivered([mb]) > before, 30_000, 1))) throw new Error(`idle message ${i} not delivered`);
    out.push(performance.now() - t0);
  }
  return out;
}

async function run(manifest: Manifest, mailboxes: Mailbox[], smtpPort: number, v: Variant, roundNo: number) {
  const log = join(manifest.logDir, 'postfix.log');
  // every run starts from empty mailboxes: Dovecot's delivery slows as a maildir grows, which would count
  // against whichever variant runs later
  for (const mb of mailboxes) {
    const r = await doveadm(manifest.dovecotConfig, ['expunge', '-u', mb.login, 'mailbox', '*', 'all']);
    if (r.code !== 0) throw new Error(`doveadm expunge ${mb.login}: ${r.code} ${r.stderr}`);
  }
  if (WARMUP > 0) {
    const base = delivered(mailboxes);
    await send(smtpPort, mailboxes, WARMUP, Math.min(SESSIONS, mailboxes.length));
    if (!(await until(async () => delivered(mailboxes) - base >= WARMUP, 60_000, 20))) throw new Error(`${v}: warm-up not delivered; see ${manifest.logDir}`);
  }
  const base = delivered(mailboxes);
  await until(async () => false, 300, 300); // postlogd flushes the warm-up's lines
  const logFrom = fileSize(log);
  const t0 = performance.now();
  const sent = await send(smtpPort, mailboxes, MESSAGES, SESSIONS);
  const complete = await until(async () => delivered(mailboxes) - base >= MESSAGES, 300_000, 10);
  const ms = performance.now() - t0;
  const got = delivered(mailboxes) - base;
  let d = delays(readFrom(log, logFrom));
  await until(async () => (d = delays(readFrom(log, logFrom))).sent.length >= got, 5000, 50);
  const latency = d.sent;
  const idle = await idleLatency(smtpPort, mailboxes[0]!);
  const out = {
    variant: v, round: roundNo, messages: MESSAGES, delivered: got, complete, seconds: round(ms / 1000, 3), msgsPerSec: round(got / (ms / 1000), 1),
    latencyMs: summarize(latency), idleLatencyMs: summarize(idle), idleSamples: idle, deferred: d.deferred, senderErrors: sent.errors.slice(0, 5),
  };
  progress(`  ${v.padEnd(6)} round ${roundNo}: ${got}/${MESSAGES} in ${out.seconds} s = ${out.msgsPerSec} msg/s, latency p50 ${out.latencyMs.p50} p99 ${out.latencyMs.p99} ms; one at a time p50 ${out.idleLatencyMs.p50} p99 ${out.idleLatencyMs.p99} ms`);
  return out;
}

async function benchDatabase(dialect: Dialect) {
  const t = await startTestPlatform(dialect, { config: { transportSecret: 'bench-transport-secret-0123456789abcdef' } });
  const work = mkdtempSync('/tmp/hmc-tpb-');
  chmodSync(work, 0o755);
  let manifest: Manifest | undefined;
  try {
    progress(`[${dialect}] provisioning mailboxes through the API`);
    const { mailboxes, smtpPort } = await provision(t, work, 'tp-bench');
    const database = t.tdb.url ? { url: t.tdb.url } : { sqlitePath: t.tdb.sqlitePath! };
    const [mxPort, submissionPort, deliverPort, reinjectPort, replyPort] = (await freePorts(5)) as [number, number, number, number, number];
    // the configuration without the agent, rendered elsewhere and moved to the real directory by its paths
    const dir = join(work, 'dp');
    await renderDataplane(t.platform.store.db, 'tp-bench', { outDir: join(work, 'direct'), database, smtpPort, plaintextAuth: true });
    manifest = await renderDataplane(t.platform.store.db, 'tp-bench', {
      outDir: dir, database, smtpPort, plaintextAuth: true, transportAgent: { mxPort, submissionPort, deliverPort, reinjectPort, replyPort },
    });
    const files = ['main.cf', 'master.cf', 'dp-transport.cf'];
    const read = (base: string) => Object.fromEntries(files.map((f) => [f, readFileSync(join(base, 'postfix', 'etc', f), 'utf8').split(join(work, 'direct')).join(dir)]));
    const withAgent = read(dir);
    const configs: Record<Variant, Record<string, string>> = {
      direct: read(join(work, 'direct')),
      agent: withAgent,
      every: withAgent,
      // every MX message through a content filter that is Postfix's own reinjection listener
      loop: { ...withAgent, 'master.cf': withAgent['master.cf']!.replace('  -o cleanup_service_name=cleanup-mx\n', `  -o content_filter=hmc-agent:[127.0.0.1]:${reinjectPort}\n`) },
    };
    if (configs.loop['master.cf'] === withAgent['master.cf']) throw new Error('no cleanup-mx in the rendered master.cf');
    // auto-replies: on for the first REPLY_SHARE of the mailboxes (agent) or all (every), off otherwise
    const ids = await t.platform.store.db.selectFrom('mailboxes as m').innerJoin('users as u', 'u.id', 'm.user_id').select(['m.id', 'm.org_id', 'u.login']).execute();
    const byLogin = new Map(ids.map((r) => [String(r.login), r]));
    const withReply = Math.max(1, Math.round(mailboxes.length * REPLY_SHARE));
    const autoReplies = async (v: Variant) => {
      for (const [i, mb] of mailboxes.entries()) {
        const r = byLogin.get(mb.login)!;
        const on = v === 'every' || (v === 'agent' && i < withReply);
        await t.ok('PUT', `/api/v1/organizations/${r.org_id}/mailboxes/${r.id}/auto-reply`, { mode: on ? 'on' : 'off', internalMessage: 'Away', externalMessage: 'Away until Monday', externalAudience: 'all' });
      }
    };
    await up(manifest.dir);
    await t.platform.startTransport([manifest]);
    const runs: Awaited<ReturnType<typeof run>>[] = [];
    const order: Variant[] = ['direct', 'agent', 'every', 'loop'];
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of r % 2 === 0 ? order : [...order].reverse()) {
        for (const f of files) writeFileSync(join(dir, 'postfix', 'etc', f), configs[v][f]!);
        await autoReplies(v);
        await reloadPostfix(manifest.dir);
        runs.push(await run(manifest, mailboxes, smtpPort, v, r + 1));
      }
    }
    const total = (v: Variant) => {
      const rs = runs.filter((x) => x.variant === v);
      const n = rs.reduce((a, x) => a + x.delivered, 0);
      const s = rs.reduce((a, x) => a + x.seconds, 0);
      return { delivered: n, seconds: round(s, 3), msgsPerSec: round(n / s, 1) };
    };
    const direct = total('direct');
    const agent = total('agent');
    const every = total('every');
    const loop = total('loop');
    const ratio = round(agent.msgsPerSec / direct.msgsPerSec, 3);
    const everyRatio = round(every.msgsPerSec / direct.msgsPerSec, 3);
    const ceiling = round(loop.msgsPerSec / direct.msgsPerSec, 3);
    const p = (v: Variant, k: 'p50' | 'p99') => round(runs.filter((x) => x.variant === v).reduce((a, x) => a + (x.latencyMs as any)[k], 0) / ROUNDS, 1);
    const added = (v: Variant) => ({ p50Ms: round(p(v, 'p50') - p('direct', 'p50'), 1), p99Ms: round(p(v, 'p99') - p('direct', 'p99'), 1) });
    // one message at a time through the agent against straight to LMTP (the queueing of the loaded runs above
    // is ±500 ms from run to run and hides the agent's own share)
    const idleOf = (v: Variant) => summarize(runs.filter((x) => x.variant === v).flatMap((x) => x.idleSamples));
    const idle = { direct: idleOf('direct'), agent: idleOf('agent'), addedP50Ms: round(idleOf('agent').p50 - idleOf('direct').p50, 2), addedP99Ms: round(idleOf('agent').p99 - idleOf('direct').p99, 2) };
    progress(`  one message at a time: direct p50 ${idle.direct.p50} p99 ${idle.direct.p99} ms, through the agent p50 ${idle.agent.p50} p99 ${idle.agent.p99} ms: added p50 ${idle.addedP50Ms} ms, p99 ${idle.addedP99Ms} ms`);
    progress(`  throughput ratio agent/direct = ${ratio} with ${withReply}/${mailboxes.length} mailboxes answering (agent ${agent.msgsPerSec} msg/s, direct ${direct.msgsPerSec} msg/s); added latency p50 ${added('agent').p50Ms} ms, p99 ${added('agent').p99Ms} ms`);
    progress(`  every message through the agent: every/direct = ${everyRatio} (${every.msgsPerSec} msg/s); a bare second queue pass: loop/direct = ${ceiling} (${loop.msgsPerSec} msg/s)`);
    return {
      throughput: { ratio, target: 0.9, met: ratio >= 0.9, answeringMailboxes: `${withReply}/${mailboxes.length}`, agent, direct, every, everyRatio, loop, secondQueuePassCeiling: ceiling },
      addedLatency: added('agent'), addedLatencyEvery: added('every'), addedLatencyOneAtATime: idle, runs: runs.map(({ idleSamples: _, ...r }) => r),
    };
  } finally {
    try {
      if (manifest) await down(manifest.dir);
    } finally {
      await t.close();
      rmSync(work, { recursive: true, force: true });
    }
  }
}

export async function runTransportBench(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the transport suite must run as root (Postfix and Dovecot masters start as root)');
  const dbs: Dialect[] = opt.db === 'both' ? ['sqlite', 'postgres'] : [opt.db as Dialect];
  const result: Record<string, any> = {
    suite: 'transport', at: new Date().toISOString(), machine: machineInfo(),
    options: { messages: MESSAGES, sessions: SESSIONS, warmup: WARMUP, rounds: ROUNDS, replyShare: REPLY_SHARE },
    databases: {},
  };
  for (const d of dbs) result.databases[d] = await benchDatabase(d);
  result.machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/transport-last.json'), json);
  process.stdout.write(`${json}\n`);
}

/**
 * Transport agent benchmark (issue 6): MESSAGES messages through Postfix → LMTP → Dovecot with HMC's transport
 * agent as the after-queue content filter, against the same servers without it (master.cf without the
 * content_filter), alternating in the same run; throughput ratio (target ≥ 0.9) and the latency the agent adds.
 * Run through `npm run bench -- --suite transport` (root). Not a test: nothing is asserted. JSON to stdout and
 * .bench/transport-last.json; see bench/README.md.
 *
 * Latency is Postfix's own `delay=` (queue arrival → delivered, 10 ms resolution): without the agent, the LMTP
 * delivery's; with it, the delivery to the agent plus the LMTP delivery of the copy handed back (linked by the
 * queue id the agent's answer names). Mailboxes have auto-replies off: the path measured is what every message
 * pays (head split, stamp check, hand-back, one indexed query for auto-replies); the domain cache's own figures
 * are the domain-cache suite's.
 */
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Dialect } from '../src/store/db.js';
import { renderDataplane, type Manifest } from '../src/dataplane/render.js';
import { down, reloadPostfix, up } from '../src/dataplane/instance.js';
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
  },
  allowPositionals: false,
  strict: false,
});
const MESSAGES = Number(opt.messages);
const SESSIONS = Number(opt.sessions);
const WARMUP = Number(opt.warmup);
const ROUNDS = Number(opt.rounds);

/**
 * direct: no content filter. agent: HMC's agent as the after-queue filter. loop: the same filter transport
 * pointed straight at the reinjection listener, no agent: the second queue pass every after-queue filter costs,
 * so loop/direct is the ceiling for any after-queue filter on this machine and agent/loop the agent's own share.
 */
type Variant = 'direct' | 'agent' | 'loop';

/** Postfix's per-message delays (ms) from its log: delivered over LMTP, and to the agent (keyed by the handed-back queue id). */
function delays(log: string): { lmtp: Map<string, number>; agent: Map<string, number>; deferred: number } {
  const lmtp = new Map<string, number>();
  const agent = new Map<string, number>();
  let deferred = 0;
  for (const line of log.split('\n')) {
    // the agent transport logs as postfix-hmc/agent/smtp (its syslog_name), deliveries as postfix-hmc/lmtp
    const m = /\/(lmtp|agent\/smtp)\[\d+\]: (\w+): to=<[^>]*>.* delay=([\d.]+).* status=(\w+)/.exec(line);
    if (!m) continue;
    if (m[4] !== 'sent') {
      deferred++;
      continue;
    }
    const ms = Number(m[3]) * 1000;
    if (m[1] === 'lmtp') lmtp.set(m[2]!, ms);
    else {
      const back = /queued as (\w+)/.exec(line);
      if (back) agent.set(back[1]!, ms);
    }
  }
  return { lmtp, agent, deferred };
}

async function run(manifest: Manifest, mailboxes: Mailbox[], smtpPort: number, v: Variant, roundNo: number) {
  const log = join(manifest.logDir, 'postfix.log');
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
  await until(async () => (d = delays(readFrom(log, logFrom))).lmtp.size >= got, 5000, 50);
  const latency = v === 'direct'
    ? [...d.lmtp.values()]
    : [...d.lmtp.entries()].filter(([q]) => d.agent.has(q)).map(([q, lm]) => lm + d.agent.get(q)!);
  const out = {
    variant: v, round: roundNo, messages: MESSAGES, delivered: got, complete, seconds: round(ms / 1000, 3), msgsPerSec: round(got / (ms / 1000), 1),
    latencyMs: summarize(latency), deferred: d.deferred, senderErrors: sent.errors.slice(0, 5),
  };
  progress(`  ${v.padEnd(6)} round ${roundNo}: ${got}/${MESSAGES} in ${out.seconds} s = ${out.msgsPerSec} msg/s, latency p50 ${out.latencyMs.p50} p99 ${out.latencyMs.p99} ms`);
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
    const [mxPort, submissionPort, reinjectPort, replyPort] = (await freePorts(4)) as [number, number, number, number];
    // master.cf without the agent (paths in it do not depend on the directory), then the real render with it
    await renderDataplane(t.platform.store.db, 'tp-bench', { outDir: join(work, 'direct'), database, smtpPort, plaintextAuth: true });
    const masters: Record<Variant, string> = { direct: readFileSync(join(work, 'direct', 'postfix', 'etc', 'master.cf'), 'utf8'), agent: '', loop: '' };
    manifest = await renderDataplane(t.platform.store.db, 'tp-bench', {
      outDir: join(work, 'dp'), database, smtpPort, plaintextAuth: true, transportAgent: { mxPort, submissionPort, reinjectPort, replyPort },
    });
    masters.agent = readFileSync(join(manifest.postfixConfigDir, 'master.cf'), 'utf8');
    masters.loop = masters.agent.replace(/content_filter=hmc-agent:(\S+):\d+$/gm, `content_filter=hmc-agent:$1:${reinjectPort}`);
    if (masters.loop === masters.agent) throw new Error('no content_filter=hmc-agent in the rendered master.cf');
    await up(manifest.dir);
    await t.platform.startTransport([manifest]);
    const runs: Awaited<ReturnType<typeof run>>[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of (r % 2 === 0 ? ['direct', 'agent', 'loop'] : ['loop', 'agent', 'direct']) as Variant[]) {
        writeFileSync(join(manifest.postfixConfigDir, 'master.cf'), masters[v]);
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
    const loop = total('loop');
    const ratio = round(agent.msgsPerSec / direct.msgsPerSec, 3);
    const ceiling = round(loop.msgsPerSec / direct.msgsPerSec, 3);
    const agentShare = round(agent.msgsPerSec / loop.msgsPerSec, 3);
    const p = (v: Variant, k: 'p50' | 'p99') => round(runs.filter((x) => x.variant === v).reduce((a, x) => a + (x.latencyMs as any)[k], 0) / ROUNDS, 1);
    const added = { p50Ms: round(p('agent', 'p50') - p('direct', 'p50'), 1), p99Ms: round(p('agent', 'p99') - p('direct', 'p99'), 1) };
    progress(`  throughput ratio agent/direct = ${ratio} (agent ${agent.msgsPerSec} msg/s, direct ${direct.msgsPerSec} msg/s); added latency p50 ${added.p50Ms} ms, p99 ${added.p99Ms} ms`);
    progress(`  after-queue ceiling loop/direct = ${ceiling} (loop ${loop.msgsPerSec} msg/s); agent/loop = ${agentShare}`);
    return { throughput: { ratio, target: 0.9, met: ratio >= 0.9, agent, direct, loop, afterQueueCeiling: ceiling, agentOverLoop: agentShare }, addedLatency: added, runs };
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
    options: { messages: MESSAGES, sessions: SESSIONS, warmup: WARMUP, rounds: ROUNDS },
    databases: {},
  };
  for (const d of dbs) result.databases[d] = await benchDatabase(d);
  result.machineAfter = { loadAverage: (machineInfo() as any).loadAverage };
  const json = JSON.stringify(result, null, 2);
  mkdirSync(resolve('.bench'), { recursive: true });
  writeFileSync(resolve('.bench/transport-last.json'), json);
  process.stdout.write(`${json}\n`);
}

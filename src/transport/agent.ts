import { Readable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Db } from '../store/db.js';
import { SmtpPool, type Dsn, type Endpoint, type SendResult } from './smtp-pool.js';
import type { DomainCache } from './domain-cache.js';
import { field, joinFields, parseFields, splitHead, unsplit, withHead, type HeaderField } from './message-head.js';
import { checkStamp, makeStamp, STAMP_FIELD, STAMP_HEADER } from './stamp.js';
import { activeAt, automatedReason, chooseReply, claimReply, composeReply, isKnownSender, pruneClaims, releaseClaim, senderMailbox, settingsFor, type AutoReplySetting } from './auto-replies.js';

/**
 * HMC's transport agent, built on nodemailer's smtp-server: the counterpart of HMC 4.5's Categorizer Override
 * Agent, in Postfix's mail path after the queue (http://www.postfix.org/FILTER_README.html).
 *
 * Why after the queue, and why next to the policy service rather than instead of it: Postfix has accepted and
 * queued every message before the agent sees it, so an agent that is down, restarting or slow loses nothing —
 * Postfix keeps the mail deferred and hands it over again (the agent answers 250 only once the message is back
 * in Postfix's queue or in the mailbox; a crash before that means a retry, SMTP's at-least-once). Decisions that
 * must be an SMTP answer to the sending client (limits, who may send to a group, 4xx for a hijacked account)
 * stay in the policy service (dataplane/policy.ts), which runs while the client is still connected; the agent
 * does what needs the message itself: the sender's authentication proof (stamp) and auto-replies.
 *
 * Only the mail that needs the agent goes through it. An after-queue filter on every message costs a second
 * queue pass whatever the filter does: measured 0.68-0.93 of the throughput without one on 2 cores over five
 * runs (bench --suite transport, loop variant), mostly below the 0.9 the agent may cost. So Postfix
 * (dataplane/render.ts) sends:
 * - submission: every submitted message (`content_filter=hmc-agent:[agent]:submissionPort`): every
 *   X-HMC-Stamp field is removed and the agent's own stamp added (stamp.ts), handed back to the reinjection
 *   listener (no filter, no address mapping, loopback only);
 * - mx: MX mail that bears a stamp field (a header_checks FILTER of the MX listener's cleanup): a genuine stamp
 *   (another node relaying its member's mail) is kept, any other stamp field removed, handed back the same way.
 *   Mail without a stamp field has nothing to remove and is never internal, and skips this pass;
 * - deliver: each recipient, after address mapping, whose mailbox's auto-reply answers now (Postfix's transport
 *   map, migration 0022; one recipient per delivery): the agent delivers the message to that mailbox's LMTP
 *   itself, answers Postfix with the mailbox server's answer, and only after the delivery works out the
 *   auto-reply (auto-replies.ts), internal only for a genuine stamp, with the null envelope sender: an external
 *   one to the reply listener (address mapping on, no filter), an internal one to the sender's own mailbox's
 *   primary address through the reinjection listener (no address mapping: past its forwarding) — an auto-reply
 *   is best effort, the message is not.
 * Per message the head is split off the stream; the body streams through untouched.
 */

export type { Endpoint } from './smtp-pool.js';

export type AgentInput = 'mx' | 'submission' | 'deliver';

export interface TransportAgentOptions {
  db: Db;
  /** Domain → organization for senders (started by the caller; the agent only reads it). */
  cache: DomainCache;
  /** Where the agent listens for Postfix's content filters (stamped MX mail, submitted mail) and deliveries. */
  mx: Endpoint;
  submission: Endpoint | null;
  deliver: Endpoint | null;
  /** Postfix's reinjection listener (after the filter: no filter, no address mapping). */
  reinject: Endpoint;
  /** Postfix's listener for auto-replies (address mapping, no filter). */
  reply: Endpoint;
  /** HMAC key of the internal stamp, shared by every agent of the platform. */
  secret: Buffer;
  /** Host name in the agent's greetings and reply Message-IDs. */
  hostname: string;
  /** At most one auto-reply per sender and mailbox in this period (ms). */
  replyPeriodMs: number;
  /** Largest message accepted (bytes; Postfix's message_size_limit already applies before the queue). */
  maxMessageBytes?: number;
  log?: Logger;
  registry?: Registry;
  now?: () => number;
}

export interface AgentStatus {
  listening: { mx: number | null; submission: number | null; deliver: number | null };
  inFlight: number;
  messages: number;
  replies: number;
}

/** An SMTP error answer for smtp-server (Postfix retries a 4xx later, keeping the message queued). */
function smtpError(code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code });
}

export class TransportAgent {
  private readonly o: TransportAgentOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private servers: { input: AgentInput; server: SMTPServer; port: number }[] = [];
  private inFlight = 0;
  private pendingReplies = new Set<Promise<void>>();
  private pruneTimer: NodeJS.Timeout | null = null;
  private counts = { messages: 0, replies: 0 };
  private readonly m: {
    messages: Counter<'input' | 'outcome'>;
    seconds: Histogram<'input'>;
    stamps: Counter<'result'>;
    replies: Counter<'kind' | 'outcome'>;
    skipped: Counter<'reason'>;
  };

  /** Connections to the reinjection and reply listeners, kept open between messages. */
  private readonly reinjectPool: SmtpPool;
  private readonly replyPool: SmtpPool;
  /** LMTP connections to the mail servers, by route (`lmtp:inet:host:port` / `lmtp:unix:/path`). */
  private readonly lmtpPools = new Map<string, SmtpPool>();

  constructor(opts: TransportAgentOptions) {
    this.o = opts;
    this.reinjectPool = new SmtpPool(opts.reinject, opts.hostname);
    this.replyPool = new SmtpPool(opts.reply, opts.hostname, { maxIdle: 2 });
    this.log = opts.log ?? pino({ level: 'silent' });
    this.now = opts.now ?? Date.now;
    const registry = opts.registry ?? new Registry();
    const reuse = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
    this.m = {
      messages: reuse('hmc_transport_messages_total', () => new Counter({ name: 'hmc_transport_messages_total', help: 'Messages through the transport agent by input (mx, submission, deliver) and outcome (passed, refused, deferred)', labelNames: ['input', 'outcome'], registers: [registry] })),
      seconds: reuse('hmc_transport_message_seconds', () => new Histogram({ name: 'hmc_transport_message_seconds', help: 'Time from the end of the message to Postfix taking it back', labelNames: ['input'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5], registers: [registry] })),
      stamps: reuse('hmc_transport_stamps_total', () => new Counter({ name: 'hmc_transport_stamps_total', help: 'Internal stamps added (submission) or found on MX mail: added, genuine, malformed, expired, forged', labelNames: ['result'], registers: [registry] })),
      replies: reuse('hmc_transport_auto_replies_total', () => new Counter({ name: 'hmc_transport_auto_replies_total', help: 'Auto-replies by kind (internal, external) and outcome (sent, failed, repeated)', labelNames: ['kind', 'outcome'], registers: [registry] })),
      skipped: reuse('hmc_transport_auto_reply_skipped_total', () => new Counter({ name: 'hmc_transport_auto_reply_skipped_total', help: 'Messages no auto-reply may answer, by reason (RFC 3834)', labelNames: ['reason'], registers: [registry] })),
    };
  }

  async start(): Promise<void> {
    const inputs: [AgentInput, Endpoint | null][] = [['mx', this.o.mx], ['submission', this.o.submission], ['deliver', this.o.deliver]];
    try {
      for (const [input, at] of inputs) {
        if (!at) continue;
        const server = new SMTPServer({
          name: this.o.hostname,
          banner: 'HMC transport agent',
          logger: false,
          secure: false,
          authOptional: true,
          disabledCommands: ['AUTH', 'STARTTLS'],
          // Postfix on loopback: no client name to look up
          disableReverseLookup: true,
          hideSize: this.o.maxMessageBytes === undefined,
          // DSN (RFC 3461). mx and submission hand the message back to Postfix with the parameters they got
          // (dsnGroups), so Postfix reports delivery as asked. deliver ends in the mailbox, and Dovecot's LMTP
          // sends no success notices: announced there, Postfix would leave a NOTIFY=SUCCESS notice to the agent
          // and nobody would send it; not announced, Postfix sends it itself (action "relayed") when the agent
          // answers 250, and bounces per NOTIFY when it refuses
          hideDSN: input === 'deliver',
          ...(this.o.maxMessageBytes !== undefined ? { size: this.o.maxMessageBytes } : {}),
          // a delivery is for one mailbox (Postfix's hmcdeliver_destination_recipient_limit = 1); a further
          // recipient is deferred, and Postfix delivers it separately
          onRcptTo: (_address, session, callback) => {
            if (input === 'deliver' && session.envelope.rcptTo.length >= 1) callback(smtpError(452, '4.5.3 One recipient per delivery'));
            else callback();
          },
          onData: (stream, session, callback) => {
            // the answer names the queue id Postfix gave the handed-back copy (or the mail server's id of the
            // delivered one): its log links the two
            this.handle(input, stream, session).then((answer) => callback(null, answer), (e: Error) => callback(e));
          },
        });
        server.on('error', (e) => this.log.warn({ err: e, input }, 'transport agent connection error'));
        // answers go out at once, not held for the client's delayed ACK (Nagle's algorithm)
        server.server.on('connection', (socket: import('node:net').Socket) => socket.setNoDelay(true));
        await new Promise<void>((res, rej) => {
          server.server.once('error', rej);
          server.listen(at.port, at.host, () => {
            server.server.off('error', rej);
            res();
          });
        });
        this.servers.push({ input, server, port: (server.server.address() as { port: number }).port });
      }
    } catch (e) {
      await this.close();
      throw e;
    }
    // the claims only matter within the period
    this.pruneTimer = setInterval(() => void pruneClaims(this.o.db, this.now(), this.o.replyPeriodMs).catch((e) => this.log.warn({ err: e }, 'auto-reply log prune failed')), 3600_000);
    this.pruneTimer.unref();
  }

  /** Port an input listens on (after start; useful with port 0). */
  port(input: AgentInput): number | null {
    return this.servers.find((s) => s.input === input)?.port ?? null;
  }

  status(): AgentStatus {
    return { listening: { mx: this.port('mx'), submission: this.port('submission'), deliver: this.port('deliver') }, inFlight: this.inFlight, messages: this.counts.messages, replies: this.counts.replies };
  }

  /**
   * Resolves once no message is in hand and the auto-replies under way have been handed to Postfix (or failed):
   * a delivery's reply is known only after the mail server took the message.
   */
  async settled(): Promise<void> {
    for (;;) {
      if (this.pendingReplies.size > 0) await Promise.allSettled([...this.pendingReplies]);
      else if (this.inFlight > 0) await new Promise((r) => setTimeout(r, 10));
      else return;
    }
  }

  /**
   * Stop listening, let messages being handed back finish (Postfix re-sends any it did not get a 250 for)
   * and wait for auto-replies under way.
   */
  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = null;
    const servers = this.servers;
    this.servers = [];
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.server.close(() => r()))));
    await Promise.allSettled([...this.pendingReplies]);
    this.reinjectPool.close();
    this.replyPool.close();
    for (const p of this.lmtpPools.values()) p.close();
    this.lmtpPools.clear();
  }

  /**
   * One message from Postfix: handed back (mx, submission) or delivered (deliver); resolves to the answer the
   * agent gives Postfix (e.g. `Ok: handed back, 250 2.0.0 Ok: queued as 4Xyz`).
   */
  private async handle(input: AgentInput, stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    this.inFlight++;
    const t0 = process.hrtime.bigint();
    try {
      const env = session.envelope;
      const sender = env.mailFrom ? env.mailFrom.address : '';
      const recipients = env.rcptTo.map((r) => r.address);
      const { head, rest } = await splitHead(stream);
      const fields: HeaderField[] = head ? parseFields(head) : [];
      const messageId = field(fields, 'message-id') ?? '';
      const stamps = fields.filter((f) => f.name === STAMP_FIELD);
      // a genuine stamp: the sender is an authenticated member of its organization (checked in every input)
      const genuine = input === 'submission' || sender === '' || stamps.length !== 1 ? null : this.checkStamp(stamps[0]!, sender, messageId, input);
      if (stamps.length > 1) this.m.stamps.inc({ result: 'malformed' });
      let out: AsyncIterable<Buffer> = rest;
      if (head && input === 'submission') {
        const kept = fields.filter((f) => f.name !== STAMP_FIELD);
        if (sender !== '') {
          kept.push({ name: STAMP_FIELD, value: '', raw: `${STAMP_HEADER}: ${makeStamp(this.o.secret, sender, messageId, this.now())}` });
          this.m.stamps.inc({ result: 'added' });
        }
        out = withHead(joinFields(kept), rest);
      } else if (head && input === 'mx' && stamps.length > 0) {
        out = withHead(joinFields(fields.filter((f) => f.name !== STAMP_FIELD || f === genuine)), rest);
      } else if (head) {
        out = unsplit(head, rest);
      }
      if (stream.sizeExceeded) throw smtpError(552, '5.3.4 Message too big');
      const answer = input === 'deliver' ? await this.deliver(sender, recipients[0]!, out) : await this.handBack(input, sender, dsnGroups(env), out);
      if (stream.sizeExceeded) throw smtpError(552, '5.3.4 Message too big');
      this.counts.messages++;
      this.m.messages.inc({ input, outcome: 'passed' });
      this.m.seconds.observe({ input }, Number(process.hrtime.bigint() - t0) / 1e9);
      if (input === 'deliver' && head) this.track(this.autoReplies(input, sender, recipients, fields, genuine !== null));
      return answer;
    } catch (e) {
      const code = (e as { responseCode?: number }).responseCode ?? 451;
      this.m.messages.inc({ input, outcome: code >= 500 ? 'refused' : 'deferred' });
      // drain what is left of the message so smtp-server can answer
      stream.resume();
      throw e;
    } finally {
      this.inFlight--;
    }
  }

  /** The stamp field if genuine for this sender and message (counted by result), else null. */
  private checkStamp(stamp: HeaderField, sender: string, messageId: string, input: AgentInput): HeaderField | null {
    const c = checkStamp(this.o.secret, stamp.value, sender, messageId, this.now());
    // counted where the stamp enters a node (mx); a delivery re-checks what the node already counted
    if (input === 'mx' || !c.ok) this.m.stamps.inc({ result: c.ok ? 'genuine' : c.reason });
    return c.ok ? stamp : null;
  }

  /**
   * Back to Postfix's reinjection listener; the answer names the queue id Postfix gave the copy. One transaction
   * per group of recipients with the same DSN parameters (nearly always one: see dsnGroups); with more, the
   * message is held in memory and a failure after an earlier group went through means Postfix sends the whole
   * message again (SMTP's at-least-once: those recipients may get it twice).
   */
  private async handBack(input: AgentInput, sender: string, groups: Envelope[], out: AsyncIterable<Buffer>): Promise<string> {
    const message = groups.length === 1 ? null : await bufferOf(out);
    const answers: string[] = [];
    for (const g of groups) {
      let r: SendResult;
      try {
        r = await this.reinjectPool.send({ from: sender, ...g }, message ?? Readable.from(out));
      } catch (e) {
        this.log.warn({ err: e, input, groups: groups.length, sent: answers.length }, 'reinjection failed; Postfix keeps the message and retries');
        throw smtpError(451, '4.3.0 Transport agent could not hand the message back, try again later');
      }
      if (r.rejected.length > 0) {
        // the reinjection listener takes every recipient from the agent; a refusal is a passing trouble there
        this.log.warn({ rejected: r.rejected.length, response: r.response, groups: groups.length, sent: answers.length }, 'reinjection refused recipients; Postfix retries the message');
        throw smtpError(451, '4.3.0 Transport agent could not hand the message back, try again later');
      }
      answers.push(r.response.replace(/^250[ -]/, ''));
    }
    return `Ok: handed back, ${answers.join('; ').slice(0, 200)}`;
  }

  /**
   * Into the recipient's mailbox over its mail server's LMTP (the route Postfix would take, dp_transport); the
   * mail server's answer becomes the agent's (a full mailbox: 552 and Postfix bounces; a 4xx: Postfix retries).
   */
  private async deliver(sender: string, recipient: string, out: AsyncIterable<Buffer>): Promise<string> {
    const pool = await this.lmtpPoolFor(recipient);
    if (!pool) {
      // the mailbox lost its route after Postfix accepted the message (disabled, moved, deleted): retried later
      throw smtpError(451, '4.3.0 No route to the mailbox now, try again later');
    }
    let r: SendResult;
    try {
      r = await pool.send({ from: sender, to: [recipient] }, Readable.from(out));
    } catch (e) {
      // refused at RCPT (unknown now, over quota) or the connection failed: the mail server's own answer when
      // there is one, else a retry
      const err = e as { responseCode?: number; response?: string };
      if (err.responseCode && err.responseCode >= 400 && err.response) throw smtpError(err.responseCode, lmtpText(err.response));
      this.log.warn({ err: e }, 'LMTP delivery failed; Postfix keeps the message and retries');
      throw smtpError(451, '4.3.0 Transport agent could not deliver the message, try again later');
    }
    const refused = r.rejectedResponses[0];
    if (refused || r.rejected.length > 0) throw smtpError(refused?.code ?? 451, lmtpText(refused?.response ?? '4.3.0 refused'));
    return `Ok: delivered, ${r.response.replace(/^250[ -]/, '').slice(0, 200)}`;
  }

  /** The LMTP connections to the mail server of the mailbox `address` routes to now (dp_transport), or null. */
  private async lmtpPoolFor(address: string): Promise<SmtpPool | null> {
    const row = await this.o.db.selectFrom('dp_transport').select('transport').where('address', '=', address.toLowerCase()).executeTakeFirst();
    const route = row ? String(row.transport) : null;
    const to = route ? lmtpEndpoint(route) : null;
    if (!to) return null;
    let pool = this.lmtpPools.get(route!);
    if (!pool) {
      pool = new SmtpPool(to, this.o.hostname, { lmtp: true });
      this.lmtpPools.set(route!, pool);
    }
    return pool;
  }

  /**
   * A reply into one mailbox (by id), with the null envelope sender: to its primary address through Postfix's
   * reinjection listener, which maps no address (no alias, group or forwarding expansion), so the mailbox's own
   * route takes it; Postfix queues and retries it like any message.
   */
  private async intoMailbox(mailboxId: string, message: Buffer): Promise<void> {
    const m = await this.o.db.selectFrom('mailboxes').select('primary_address').where('id', '=', mailboxId).executeTakeFirst();
    if (!m) throw new Error(`mailbox ${mailboxId} is gone`);
    const r = await this.reinjectPool.send({ from: '', to: [String(m.primary_address)] }, message);
    if (r.rejected.length > 0) throw new Error(`Postfix refused the reply: ${r.rejectedResponses[0]?.response ?? r.response}`);
  }

  private track(p: Promise<void>): void {
    const q = p.catch((e) => this.log.warn({ err: e }, 'auto-reply failed')).finally(() => this.pendingReplies.delete(q));
    this.pendingReplies.add(q);
  }

  /** The auto-replies a delivered message earns, sent to the reply listener. */
  private async autoReplies(input: AgentInput, sender: string, recipients: string[], fields: HeaderField[], authenticated: boolean): Promise<void> {
    const skip = automatedReason(sender, fields);
    if (skip) {
      this.m.skipped.inc({ reason: skip });
      return;
    }
    const settings = await settingsFor(this.o.db, [...new Set(recipients.map((r) => r.toLowerCase()))]);
    if (settings.length === 0) return;
    const now = this.now();
    const senderDomain = this.o.cache.orgOfAddress(sender);
    // a mailbox writing from another of its addresses (an alias, a domain-alias spelling) is still itself
    const own = senderDomain ? await senderMailbox(this.o.db, sender, senderDomain.aliasOfName) : null;
    // authenticated, and the address is a mailbox's of an organization: that organization's member, whose
    // mailbox the internal reply goes to (an address of a group sent as is nobody's mailbox: external rules)
    const authOrg = authenticated && senderDomain?.live && own ? senderDomain.orgId : null;
    for (const s of settings) {
      if (!activeAt(s, now) || s.mailboxId === own || sameMailbox(s, sender)) continue;
      const choice = await chooseReply(s, authOrg, () => isKnownSender(this.o.db, s.orgId, sender));
      if (!choice) continue;
      await this.sendReply(s, choice, sender, choice.kind === 'internal' ? own : null, fields, now, input);
    }
  }

  /**
   * One reply. The external one goes to Postfix's reply listener (address mapping on: it reaches the sender
   * wherever the sender's address leads). The internal one goes to the sender's own mailbox (`into`) alone,
   * past any forwarding of that mailbox (intoMailbox): the internal text never leaves the organization, not even
   * where a member forwards its mail elsewhere.
   */
  private async sendReply(s: AutoReplySetting, choice: { kind: 'internal' | 'external'; text: string }, sender: string, into: string | null, fields: HeaderField[], now: number, input: AgentInput): Promise<void> {
    if (!(await claimReply(this.o.db, s.mailboxId, sender, now, this.o.replyPeriodMs))) {
      this.m.replies.inc({ kind: choice.kind, outcome: 'repeated' });
      return;
    }
    try {
      const message = await composeReply(s, choice, sender, fields, this.o.hostname);
      if (choice.kind === 'internal') await this.intoMailbox(into!, message);
      else await this.replyPool.send({ from: '', to: [sender] }, message);
      this.counts.replies++;
      this.m.replies.inc({ kind: choice.kind, outcome: 'sent' });
      this.log.info({ mailboxId: s.mailboxId, kind: choice.kind, input }, 'auto-reply sent');
    } catch (e) {
      this.m.replies.inc({ kind: choice.kind, outcome: 'failed' });
      await releaseClaim(this.o.db, s.mailboxId, sender, now).catch(() => {});
      throw e;
    }
  }
}

/** An LMTP route of dp_transport (`lmtp:inet:host:port`, `lmtp:inet:[v6]:port`, `lmtp:unix:/path`) as an endpoint. */
export function lmtpEndpoint(route: string): Endpoint | null {
  const unix = /^lmtp:unix:(\/.+)$/.exec(route);
  if (unix) return { host: 'localhost', port: 0, path: unix[1]! };
  const inet = /^lmtp:(?:inet:)?(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(route);
  if (!inet) return null;
  return { host: inet[1]!.replace(/^\[|\]$/g, ''), port: Number(inet[2]) };
}

/** A mail server's answer as the agent's text: without its code (smtp-server adds the agent's), one line. */
function lmtpText(response: string): string {
  return response.replace(/^\d{3}[ -]/, '').replace(/[\r\n]+/g, ' ').slice(0, 300);
}

/** The sender is the mailbox's primary or the addressed address (decided without a query, whatever the domain cache knows). */
function sameMailbox(s: AutoReplySetting, sender: string): boolean {
  const a = sender.toLowerCase();
  return a === s.primaryAddress.toLowerCase() || a === s.address.toLowerCase();
}

/** Recipients and the DSN parameters they are handed back with. */
interface Envelope {
  to: string[];
  dsn?: Dsn;
}

/**
 * The recipients of a message grouped by their DSN parameters, each group one transaction back to Postfix with
 * the message's RET and ENVID and the group's NOTIFY and ORCPT (nodemailer gives every RCPT of a transaction the
 * same). Postfix gives a recipient it rewrote (an alias, a group member, a forwarding target) the address the
 * sender wrote as ORCPT, so passing every ORCPT would split ordinary mail to a group into several queue files: an
 * ORCPT is passed only for a recipient that asked for notices (NOTIFY), and never one that only repeats the
 * recipient. So mail without DSN requests is one group, as is a message whose recipients asked alike.
 */
export function dsnGroups(env: SMTPServerSession['envelope']): Envelope[] {
  const ret = env.dsn?.ret === 'FULL' || env.dsn?.ret === 'HDRS' ? env.dsn.ret : null;
  const envid = env.dsn?.envid ?? null;
  const groups = new Map<string, Envelope>();
  for (const r of env.rcptTo) {
    const d = (r as { dsn?: { notify?: string[]; orcpt?: string } }).dsn;
    const notify = d?.notify?.length ? d.notify.join(',') : null;
    const orcpt = notify && d?.orcpt && d.orcpt.toLowerCase() !== `rfc822;${r.address.toLowerCase()}` ? d.orcpt : null;
    const key = `${notify ?? ''}\n${orcpt ?? ''}`;
    let g = groups.get(key);
    if (!g) {
      g = { to: [], ...(ret || envid || notify || orcpt ? { dsn: { ret, envid, notify, orcpt } } : {}) };
      groups.set(key, g);
    }
    g.to.push(r.address);
  }
  return [...groups.values()];
}

async function bufferOf(out: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of out) chunks.push(c);
  return Buffer.concat(chunks);
}

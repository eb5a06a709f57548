import { existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { Errors } from '../core/errors.js';
import { SENDING_DEFAULTS } from '../plans/limits.js';
import type { Db } from '../store/db.js';
import { liveMailGroup, maySendToGroup, type MailGroup } from '../transport/group-senders.js';
import {
  limitEventKey, limitReached, pruneCounters, readSendingUsage, recordLimitReached, recordMessage, type LimitHit, type LimitedSender, type SendingUsage,
} from '../transport/sending-limits.js';
import { readManifest } from './instance.js';
import { doveadm, parseTab, type DoveadmResult } from './doveadm.js';

/**
 * The per-mailbox sending and receiving limits, the sending limits against hijacked accounts and the groups'
 * "who may send" rule, enforced in the mail path: a Postfix SMTPD access policy
 * service (http://www.postfix.org/SMTPD_POLICY_README.html) that Postfix asks with `check_policy_service
 * inet:HOST:PORT` in smtpd_recipient_restrictions (protocol_state=RCPT) and smtpd_end_of_data_restrictions
 * (protocol_state=END-OF-MESSAGE), on the MX and on the authenticated submission listener.
 *
 * Protocol: a request is `name=value` lines ended by an empty line; the reply is `action=...` and an empty
 * line. Postfix keeps a connection open across requests, sessions and messages (one connection per smtpd
 * process), so requests on one connection are answered in order. A request over 16 KiB, a line without `=`
 * or a request that is not `request=smtpd_access_policy` is trouble: as the README prescribes, the
 * connection is closed without a reply (Postfix would retry, then apply smtpd_policy_service_default_action).
 *
 * The sender is only ever the SASL login (`sasl_username`, authenticated submission); `sender` (MAIL FROM)
 * is whatever the client claims, so unauthenticated traffic (the MX) carries no sender limits. Rules:
 * - RCPT, authenticated: the login must be a Dovecot user (dp_users: enabled user, active mailbox, active
 *   organization), else `554 5.7.1` (Dovecot just authenticated it, so this is a login disabled or removed
 *   since: refusing is the safe side). A declared SIZE= above the mailbox's maxSendSize → `552 5.3.4`.
 *   Recipients beyond recipientLimit in one message (Postfix's `instance`) → `452 4.5.3 Too many
 *   recipients` (RFC 5321 §4.5.3.1.10: the client sends the rest in another transaction). The mailbox or its
 *   organization at its sending limit (messages per hour: this message would be one more; recipients per day:
 *   this recipient would be one more) → `450 4.7.1` and one mail event per limit and window
 *   (transport/sending-limits.ts: windows, counters shared by every node through the database, cost). Mailbox
 *   usage read back from Dovecot at or above prohibitSendQuota → `554 5.2.2` (Exchange's code for a sender over
 *   its send quota; permanent: the user must make room before sending again).
 * - RCPT, any: the recipient is looked up in the address namespace, by itself or its domain-alias spelling. A
 *   mailbox as Postfix routes it (dp_mailbox_addresses) whose maxReceiveSize is below a declared SIZE= →
 *   `552 5.3.4` for that recipient (RFC 1870); accepted mailbox recipients are remembered with their limit for the
 *   end of the message (a mail-enabled public folder: its maxItemSize). A distribution group whose send policy
 *   does not admit the sender → `550 5.7.1` (transport/group-senders.ts: `organization` admits authenticated
 *   senders of its organization only, so the MX is refused; `listed` its listed senders). Unknown and external
 *   addresses: nothing here (Postfix refuses unknown local ones itself, quarantined addresses included, since a
 *   released address is in no lookup view).
 * - END-OF-MESSAGE: `size` is now the real size. Authenticated and above maxSendSize → `552 5.3.4`; above
 *   the maxReceiveSize of any remembered recipient → `552 5.3.4` naming it. After DATA Postfix can only
 *   accept or refuse the message as a whole, so one small mailbox refuses it for every recipient; the sender
 *   gets the reason at once and can resend without that recipient. Otherwise an authenticated message is
 *   counted (once, with Postfix's recipient_count) toward its mailbox's and organization's sending limits.
 * - Anything else → `DUNNO` (the next restriction decides).
 * - The database or the usage source failing → `451 4.3.0`: a limit that could not be checked neither
 *   refuses for good nor lets the message through; the client retries. Usage that Dovecot does not know
 *   (null) is the same: usage is read back, never guessed.
 *
 * Per request the database work is small and indexed. RCPT: the recipient in `addresses` (primary key; an
 * external recipient costs only this), then one lookup for what it is (mailbox, folder or group), plus one for a
 * `listed` group's senders (recursion from the sender's own memberships). An authenticated message adds, once at
 * its first RCPT, the sender's limits (dp_users by login) and its sending counters (one primary-key range query),
 * and writes once, at END-OF-MESSAGE: one upsert of four counter rows. The MX never writes. A refusal at a
 * sending limit writes its event at most once per window per service (remembered in memory; the database's unique
 * key makes it once across nodes). Usage is cached per login for `usageCacheMs` (default 5 s, one
 * doveadm run for a message to many recipients). Message state is keyed by client address + instance, not
 * by connection, because Postfix may reconnect in the middle of a message (smtpd_policy_service_max_ttl);
 * it is dropped at END-OF-MESSAGE, when the connection moves to another instance, or after 15 idle minutes.
 */

export interface MailServerRef {
  id: string;
  name: string;
}

/** Storage a login uses in bytes, read from the data plane that holds its mailbox; null when it does not know the login. */
export type UsageSource = (login: string, server: MailServerRef) => Promise<number | null>;

export interface PolicyServiceOptions {
  db: Db;
  host: string;
  /** 0 = any free port. */
  port: number;
  usage: UsageSource;
  log?: Logger;
  /** How long one usage reading is reused for the same login (default 5000 ms; 0 = not cached). */
  usageCacheMs?: number;
  /** The clock of the sending-limit windows and their events (default Date.now); tests move it forward. */
  now?: () => number;
  /** Where the refusal counters are registered (the platform's /metrics); none when absent. */
  registry?: Registry;
}

export interface PolicyService {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** The replies (`action=` values). */
const POLICY_REPLIES = {
  dunno: 'DUNNO',
  tooManyRecipients: '452 4.5.3 Too many recipients',
  overSendQuota: '554 5.2.2 Mailbox is over its send quota',
  unknownLogin: '554 5.7.1 This login may not send mail',
  tooBigToSend: (limit: number) => `552 5.3.4 Message too big: the sender's limit is ${limit} bytes`,
  tooBigForRecipient: (address: string) => `552 5.3.4 Message too big for recipient <${address}>`,
  tempFailure: '451 4.3.0 Mailbox limits cannot be checked now, try again later',
  sendingLimit: (hit: LimitHit) => `450 4.7.1 Sending limit reached: this ${hit.scope} sends at most ${hit.max} ${
    hit.limit === 'messagesPerHour' ? 'messages per hour' : 'recipients per day'}; try again later`,
  groupRefused: (address: string) => `550 5.7.1 Not authorized to send to <${address}>`,
} as const;

/** Largest request accepted (Postfix sends well under 2 KiB; its own attribute limit is far below this). */
export const MAX_REQUEST_BYTES = 16 * 1024;
const MESSAGE_IDLE_MS = 15 * 60_000;
const SWEEP_MS = 60_000;
/** How often expired sending counters are deleted (each node does it; an indexed delete of few rows). */
const PRUNE_MS = 10 * 60_000;

interface Sender extends LimitedSender {
  maxSendSize: number;
  prohibitSendQuota: number;
  recipientLimit: number;
  server: MailServerRef;
}

/** What is known about one message between its first RCPT and its END-OF-MESSAGE. */
interface MessageState {
  /** undefined: not looked up yet; null: the login is not a Dovecot user. */
  sender: Sender | null | undefined;
  /** Recipients answered DUNNO (the recipient limit counts these). */
  accepted: number;
  /** Accepted recipients that are mailboxes, with their receive limit. */
  receiveLimits: { address: string; maxReceiveSize: number }[];
  /** The sender's sending-limit counts, read at the first RCPT (authenticated only). */
  sending?: SendingUsage;
  touched: number;
}

class Malformed extends Error {}

function parseRequest(text: string): Map<string, string> {
  const attrs = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Malformed(`line without name=value: ${JSON.stringify(line.slice(0, 40))}`);
    attrs.set(line.slice(0, eq), line.slice(eq + 1));
  }
  if (attrs.get('request') !== 'smtpd_access_policy') throw new Malformed('not request=smtpd_access_policy');
  return attrs;
}

const lower = (v: string | undefined) => (v ?? '').trim().toLowerCase();

async function findSender(db: Db, login: string): Promise<Sender | null> {
  const r = await db.selectFrom('dp_users as u')
    .innerJoin('mailboxes as m', 'm.id', 'u.mailbox_id')
    .innerJoin('mail_servers as v', 'v.id', 'u.server_id')
    .leftJoin('org_subscriptions as s', 's.org_id', 'm.org_id')
    .leftJoin('org_plans as p', 'p.id', 's.org_plan_id')
    .select([
      'm.id as mailbox_id', 'm.org_id', 'm.reseller_id', 'm.max_send_size', 'm.prohibit_send_quota', 'm.recipient_limit', 'm.max_messages_per_hour',
      'm.max_recipients_per_day', 'p.max_messages_per_hour as org_messages_per_hour', 'p.max_recipients_per_day as org_recipients_per_day',
      'v.id as server_id', 'v.name as server_name',
    ])
    .where('u.login', '=', login)
    .executeTakeFirst();
  if (!r) return null;
  // every organization with a mailbox has a subscription; the defaults only guard a row that lost it
  const org = SENDING_DEFAULTS.organization;
  return {
    login, mailboxId: r.mailbox_id, orgId: r.org_id, resellerId: r.reseller_id,
    maxSendSize: Number(r.max_send_size), prohibitSendQuota: Number(r.prohibit_send_quota), recipientLimit: Number(r.recipient_limit),
    mailbox: { maxMessagesPerHour: Number(r.max_messages_per_hour), maxRecipientsPerDay: Number(r.max_recipients_per_day) },
    organization: {
      maxMessagesPerHour: Number(r.org_messages_per_hour ?? org.maxMessagesPerHour), maxRecipientsPerDay: Number(r.org_recipients_per_day ?? org.maxRecipientsPerDay),
    },
    server: { id: r.server_id, name: r.server_name },
  };
}

/** What a recipient address is to the limits: a mailbox or public folder with its size limit, a group, or nothing. */
type Recipient = { kind: 'sized'; maxReceiveSize: number } | { kind: 'group'; group: MailGroup } | null;

/**
 * What `address` reaches, in the platform's one address namespace (`addresses`, primary key), by the address itself
 * or its domain-alias spelling (user@alias → user@target, as Postfix resolves it): one query, which is all an
 * external recipient costs. Then one more for what was found: the receive limit of a mailbox as Postfix routes it
 * (dp_mailbox_addresses), the maxItemSize of a mail-enabled public folder, or the group of a live organization.
 */
async function findRecipient(db: Db, address: string): Promise<Recipient> {
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  const a = await db.selectFrom('addresses')
    .select(['address', 'recipient_kind', 'recipient_id'])
    .where((eb) => eb('address', 'in', [
      eb.val(address),
      eb.selectFrom('accepted_domains as d').innerJoin('accepted_domains as t', (j) => j.onRef('t.domain_id', '=', 'd.alias_of').onRef('t.org_id', '=', 'd.org_id'))
        .select(sql<string>`${local} || '@' || t.name`.as('a')).where('d.name', '=', domain),
    ]))
    .executeTakeFirst();
  if (!a) return null;
  if (a.recipient_kind === 'mailbox') {
    const r = await db.selectFrom('dp_mailbox_addresses as x').innerJoin('mailboxes as m', 'm.id', 'x.mailbox_id')
      .select('m.max_receive_size').where('x.address', '=', a.address).executeTakeFirst();
    return r ? { kind: 'sized', maxReceiveSize: Number(r.max_receive_size) } : null;
  }
  if (a.recipient_kind === 'public_folder') {
    const f = await db.selectFrom('dp_public_folder_addresses').select('max_item_size').where('address', '=', a.address).executeTakeFirst();
    return f ? { kind: 'sized', maxReceiveSize: Number(f.max_item_size) } : null;
  }
  const group = await liveMailGroup(db, a.recipient_id);
  return group ? { kind: 'group', group } : null;
}

/** The receive limit of the mailbox or public folder `address` reaches; null when it is neither. */
async function findReceiveLimit(db: Db, address: string): Promise<number | null> {
  const r = await findRecipient(db, address);
  return r?.kind === 'sized' ? r.maxReceiveSize : null;
}

/** `host:port` or `[v6]:port` (HMC_POLICY_LISTEN) → where the service listens; port 0 = any free one. */
export function parseListenAddress(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw Errors.invalidRequest(`the policy service address must be host:port or [IPv6]:port, got "${s.slice(0, 100)}"`);
  return { host: (m[1] ?? m[2])!, port };
}

/** The service's Prometheus counters, registered once per registry (a second service shares them). */
function policyMetrics(registry: Registry | undefined): { limitRefusals: Counter<'scope' | 'limit'>; groupRefusals: Counter<'policy' | 'authenticated'> } | null {
  if (!registry) return null;
  const counter = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> =>
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
  return {
    limitRefusals: counter('hmc_policy_sending_limit_refusals_total', 'Recipients refused (450 4.7.1) at a sending limit, by scope (mailbox, organization) and limit', ['scope', 'limit']),
    groupRefusals: counter('hmc_policy_group_refusals_total', 'Recipients refused (550 5.7.1) by a group\'s send policy, by policy and whether the sender was authenticated', ['policy', 'authenticated']),
  };
}

/** Start the policy service; resolves once it listens. */
export async function startPolicyService(opts: PolicyServiceOptions): Promise<PolicyService> {
  const { db, log } = opts;
  const usageCacheMs = opts.usageCacheMs ?? 5000;
  const now = opts.now ?? Date.now;
  const messages = new Map<string, MessageState>();
  const usageCache = new Map<string, { until: number; value: Promise<number | null> }>();
  /** Limit events this service recorded (or found recorded), by dedupe key → end of their window. */
  const limitEvents = new Map<string, number>();
  const sockets = new Set<Socket>();
  const metrics = policyMetrics(opts.registry);
  let prunedAt = 0;

  const usageOf = (login: string, server: MailServerRef): Promise<number | null> => {
    const now = Date.now();
    const hit = usageCache.get(login);
    if (hit && hit.until > now) return hit.value;
    const value = opts.usage(login, server);
    if (usageCacheMs > 0) {
      usageCache.set(login, { until: now + usageCacheMs, value });
      value.catch(() => {
        if (usageCache.get(login)?.value === value) usageCache.delete(login);
      });
    }
    return value;
  };

  const messageState = (key: string): MessageState => {
    let m = messages.get(key);
    if (!m) {
      m = { sender: undefined, accepted: 0, receiveLimits: [], touched: 0 };
      messages.set(key, m);
    }
    m.touched = Date.now();
    return m;
  };

  async function senderOf(m: MessageState | undefined, login: string): Promise<Sender | null> {
    if (m && m.sender !== undefined) return m.sender;
    const s = await findSender(db, login);
    if (m) m.sender = s;
    return s;
  }

  /** Refuse at a sending limit: counted in the metrics every time, recorded as an event once per window. */
  async function limitRefusal(sender: Sender, hit: LimitHit): Promise<string> {
    metrics?.limitRefusals.inc({ scope: hit.scope, limit: hit.limit });
    const at = now();
    const { key, until } = limitEventKey(sender, hit, at);
    if (!limitEvents.has(key)) {
      try {
        if (await recordLimitReached(db, sender, hit, at)) {
          log?.warn({ login: sender.login, orgId: sender.orgId, scope: hit.scope, limit: hit.limit, max: hit.max }, 'policy: sending limit reached');
        }
        limitEvents.set(key, until);
      } catch (e) {
        // the refusal stands without its event; the next refusal tries to record it again
        log?.error({ err: e, login: sender.login }, 'policy: cannot record a sending-limit event');
      }
    }
    return POLICY_REPLIES.sendingLimit(hit);
  }

  async function atRcpt(attrs: Map<string, string>, m: MessageState): Promise<string> {
    const login = lower(attrs.get('sasl_username'));
    const size = Number(attrs.get('size')) || 0; // 0: no SIZE= given
    let sender: Sender | null = null;
    if (login) {
      sender = await senderOf(m, login);
      if (!sender) return POLICY_REPLIES.unknownLogin;
      if (size > sender.maxSendSize) return POLICY_REPLIES.tooBigToSend(sender.maxSendSize);
      if (m.accepted >= sender.recipientLimit) return POLICY_REPLIES.tooManyRecipients;
      m.sending ??= await readSendingUsage(db, sender, now());
      const hit = limitReached(sender, m.sending, m.accepted);
      if (hit) return limitRefusal(sender, hit);
      const used = await usageOf(login, sender.server);
      if (used === null) {
        log?.warn({ login, server: sender.server.name }, 'policy: Dovecot has no usage for this login; send quota not checked');
        return POLICY_REPLIES.tempFailure;
      }
      if (used >= sender.prohibitSendQuota) return POLICY_REPLIES.overSendQuota;
    }
    const recipient = lower(attrs.get('recipient'));
    if (recipient) {
      const r = await findRecipient(db, recipient);
      if (r?.kind === 'sized') {
        if (size > r.maxReceiveSize) return POLICY_REPLIES.tooBigForRecipient(recipient);
        m.receiveLimits.push({ address: recipient, maxReceiveSize: r.maxReceiveSize });
      } else if (r?.kind === 'group') {
        const from = { mailbox: sender ? { id: sender.mailboxId, orgId: sender.orgId } : null, envelopeSender: lower(attrs.get('sender')) };
        if (!(await maySendToGroup(db, r.group, from))) {
          metrics?.groupRefusals.inc({ policy: r.group.sendPolicy, authenticated: sender ? 'yes' : 'no' });
          return POLICY_REPLIES.groupRefused(recipient);
        }
      }
    }
    m.accepted++;
    return POLICY_REPLIES.dunno;
  }

  async function atEndOfMessage(attrs: Map<string, string>, m: MessageState | undefined): Promise<string> {
    const login = lower(attrs.get('sasl_username'));
    const size = Number(attrs.get('size')) || 0;
    let sender: Sender | null = null;
    if (login) {
      sender = await senderOf(m, login);
      if (!sender) return POLICY_REPLIES.unknownLogin;
      if (size > sender.maxSendSize) return POLICY_REPLIES.tooBigToSend(sender.maxSendSize);
    }
    let limits = m?.receiveLimits ?? [];
    // no state (this service restarted during the message): Postfix names the recipient when there is one
    const recipient = lower(attrs.get('recipient'));
    if (!m && recipient) {
      const maxReceiveSize = await findReceiveLimit(db, recipient);
      limits = maxReceiveSize === null ? [] : [{ address: recipient, maxReceiveSize }];
    }
    const over = limits.find((l) => size > l.maxReceiveSize);
    if (over) return POLICY_REPLIES.tooBigForRecipient(over.address);
    if (sender) {
      // accepted as far as this service decides: the message and its recipients count toward the sending limits
      const n = Number(attrs.get('recipient_count'));
      await recordMessage(db, sender, Number.isSafeInteger(n) && n > 0 ? n : (m?.accepted ?? 0), now());
    }
    return POLICY_REPLIES.dunno;
  }

  /** One request → the action. `conn.instance` is the message this connection last asked about. */
  async function decide(attrs: Map<string, string>, conn: { client: string; instance: string | null }): Promise<string> {
    const state = attrs.get('protocol_state');
    if (state !== 'RCPT' && state !== 'END-OF-MESSAGE') return POLICY_REPLIES.dunno;
    const instance = attrs.get('instance') ?? '';
    const key = `${conn.client}|${instance}`;
    if (conn.instance !== null && conn.instance !== key) messages.delete(conn.instance);
    conn.instance = key;
    try {
      if (state === 'RCPT') return await atRcpt(attrs, messageState(key));
      const m = messages.get(key);
      messages.delete(key);
      conn.instance = null;
      return await atEndOfMessage(attrs, m);
    } catch (e) {
      log?.error({ err: e, state, login: attrs.get('sasl_username') || undefined }, 'policy: limit check failed');
      return POLICY_REPLIES.tempFailure;
    }
  }

  function serve(socket: Socket): void {
    sockets.add(socket);
    socket.setEncoding('utf8');
    const conn = { client: socket.remoteAddress ?? '', instance: null as string | null };
    let buffer = '';
    let queue = Promise.resolve();
    const drop = (why: string) => {
      log?.warn({ client: conn.client, why }, 'policy: bad request, closing the connection');
      buffer = '';
      socket.destroy();
    };
    socket.on('data', (chunk: string) => {
      if (socket.destroyed) return;
      buffer += chunk;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const text = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (Buffer.byteLength(text) > MAX_REQUEST_BYTES) return drop(`request over ${MAX_REQUEST_BYTES} bytes`);
        let attrs: Map<string, string>;
        try {
          attrs = parseRequest(text);
        } catch (e) {
          return drop((e as Error).message);
        }
        queue = queue.then(async () => {
          const action = await decide(attrs, conn);
          if (!socket.destroyed) socket.write(`action=${action}\n\n`);
        }).catch((e) => {
          log?.error({ err: e, client: conn.client }, 'policy: cannot answer, closing the connection');
          socket.destroy();
        });
      }
      if (Buffer.byteLength(buffer) > MAX_REQUEST_BYTES) drop(`request over ${MAX_REQUEST_BYTES} bytes`);
    });
    socket.on('error', (e) => log?.debug({ err: e, client: conn.client }, 'policy: connection error'));
    socket.on('close', () => sockets.delete(socket));
  }

  const sweep = setInterval(() => {
    const wall = Date.now();
    for (const [k, m] of messages) if (wall - m.touched > MESSAGE_IDLE_MS) messages.delete(k);
    for (const [k, c] of usageCache) if (c.until <= wall) usageCache.delete(k);
    const at = now();
    for (const [k, until] of limitEvents) if (until <= at) limitEvents.delete(k);
    if (at - prunedAt >= PRUNE_MS) {
      prunedAt = at;
      pruneCounters(db, at).catch((e) => log?.warn({ err: e }, 'policy: cannot prune sending counters'));
    }
  }, SWEEP_MS);
  sweep.unref();

  const server = createServer(serve);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    clearInterval(sweep);
    throw e;
  }
  const port = (server.address() as { port: number }).port;
  log?.info({ host: opts.host, port }, 'policy service listening');
  return {
    host: opts.host,
    port,
    async close() {
      clearInterval(sweep);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/**
 * A usage source reading Dovecot's quota accounting: `doveadm -c CONF -f tab quota get -u LOGIN` against
 * the data plane of the mail server holding the mailbox (no shell; killed after `timeoutMs`, default 5 s).
 * Dovecot reports STORAGE in KiB (rounded down), so the bytes returned are a multiple of 1024. Null when
 * `dovecotConfigFor` has no configuration for the server or Dovecot does not know the login (exit 67).
 */
export function doveadmUsage(dovecotConfigFor: (server: MailServerRef) => string | null, opts: { timeoutMs?: number } = {}): UsageSource {
  return async (login, server) => {
    const conf = dovecotConfigFor(server);
    if (!conf) return null;
    let r: DoveadmResult;
    try {
      r = await doveadm(conf, ['-f', 'tab', 'quota', 'get', '-u', login], { timeoutMs: opts.timeoutMs ?? 5000, maxBuffer: 64 * 1024 });
    } catch (e) {
      throw new Error(`doveadm quota get -u ${login} (${server.name}) failed: ${(e as Error).message}`);
    }
    if (r.code === 67) return null; // EX_NOUSER
    if (r.code !== 0) throw new Error(`doveadm quota get -u ${login} (${server.name}) failed: exit ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}`);
    return storageBytes(r.stdout);
  };
}

/** Bytes used from `doveadm -f tab quota get` output (the largest STORAGE value over the quota roots, KiB → bytes). */
function storageBytes(tabOutput: string): number | null {
  const rows = parseTab(tabOutput);
  if (rows.length > 0 && (rows[0]!.type === undefined || rows[0]!.value === undefined)) throw new Error(`unexpected doveadm quota output: ${JSON.stringify(tabOutput.slice(0, 100))}`);
  const kib = rows.filter((r) => r.type === 'STORAGE').map((r) => Number(r.value)).filter((n) => Number.isFinite(n));
  return kib.length ? Math.max(...kib) * 1024 : null;
}

/**
 * Dovecot configurations of the data planes rendered under `root`: `root/<server name>/dataplane.json`
 * (`hmc dataplane render --out root/<name>`), used only when the manifest is that server's (same id).
 */
export function dataplaneDovecotConfigs(root: string): (server: MailServerRef) => string | null {
  return (server) => {
    if (basename(server.name) !== server.name || server.name.startsWith('.')) return null;
    const dir = join(root, server.name);
    if (!existsSync(join(dir, 'dataplane.json'))) return null;
    const m = readManifest(dir);
    return m.server.id === server.id ? m.dovecotConfig : null;
  };
}

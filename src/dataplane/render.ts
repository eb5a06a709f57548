import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { isAbsolute, join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { Errors } from '../core/errors.js';
import type { Db } from '../store/db.js';
import { aliasGateSql, publicAclGroupsSql } from './migrations.js';

/**
 * Configuration for one mail server's data plane: a Postfix instance (MX) and a Dovecot instance (LMTP,
 * IMAP, POP3) whose every lookup is a query on the platform database's dp_* views (dataplane/migrations.ts).
 * Nothing is copied out of the database, so there is nothing to re-render when tenants change; render again
 * only when the server's endpoints or these options change.
 *
 * Layout under `outDir` (absolute paths are written into the files, so render where the files will live):
 *   dataplane.json                what `up`/`down` need (ports, pid files, mail root, database file)
 *   postfix/etc/main.cf, master.cf, dp-*.cf (sqlite_table(5) / pgsql_table(5) lookups)
 *   postfix/spool, postfix/data   queue and data directories (created by Postfix itself)
 *   dovecot/dovecot.conf, dovecot/sql.conf.ext, dovecot/run (base_dir), dovecot/state (state_dir)
 *   log/postfix.log, log/dovecot.log
 *
 * Listeners bind `listen` (default 127.0.0.1): SMTP on `smtpPort`; LMTP, IMAP and POP3 on the ports of the
 * server's registered endpoints (an LMTP `unix:` endpoint becomes that socket). Postfix routes each address
 * through dp_transport, i.e. to the LMTP endpoint of the server its mailbox is placed on.
 *
 * Settings from the measured facts (shared/reference/dataplane-facts.md): chroot off everywhere (the SQLite
 * WAL side files are not reachable from a chroot), own queue/data/base/state directories, logs to files, a
 * numeric mail uid (0 refused by Dovecot), `virtual_alias_domains` empty. Dovecot's auth cache holds positive
 * answers only and is flushed by the platform after every change (dataplane/auth-cache.ts), so a password or
 * state change is seen by the next login once its request is done.
 */

export type DatabaseLocation = { sqlitePath: string } | { url: string };

export interface RenderOptions {
  /** Directory the files are written to (created); absolute or relative to the working directory. */
  outDir: string;
  /** The platform database Postfix and Dovecot query. */
  database: DatabaseLocation;
  /** Port of Postfix's SMTP (MX) listener. */
  smtpPort: number;
  /** Address every listener binds (default 127.0.0.1). */
  listen?: string;
  /** Postfix myhostname and Dovecot hostname (default `<server>.hmc.invalid`). */
  hostname?: string;
  /** Numeric uid/gid owning the maildirs (default 5000; need not exist in /etc/passwd; 0 is refused). */
  mailUid?: number;
  mailGid?: number;
  /** Test and development only: IMAP/POP3 logins in clear text without TLS. */
  plaintextAuth?: boolean;
  /** TLS certificate and key (PEM files) for IMAP/POP3 and SMTP STARTTLS; required unless plaintextAuth. */
  tlsCert?: string;
  tlsKey?: string;
  /** Port of the authenticated submission listener (SASL through Dovecot); none when absent. */
  submissionPort?: number;
  /** Where mail for other domains goes (`host:port`, `[host]:port`): a smarthost; default direct (MX lookup). */
  relayhost?: string;
  /** HMC's policy service (`host:port`, dataplane/policy.ts): per-mailbox size, recipient and send-quota limits. */
  policyService?: string;
  /** Largest message Postfix accepts at all, bytes (default 100 MiB); per-mailbox limits are the policy service's. */
  messageSizeLimit?: number;
  /**
   * Dovecot's brute-force defences (failure delay, per-IP auth penalty); default on. Tests turn them off:
   * with them, a few deliberate bad logins from 127.0.0.1 make the next good one wait ~15 s.
   */
  authPenalty?: boolean;
  /**
   * Dovecot's auth cache TTL, seconds (default 300; 0 = no cache, every lookup a query). The platform flushes
   * the cache of every data plane under its HMC_DATAPLANE_ROOT after each change (dataplane/auth-cache.ts);
   * a data plane no platform flushes sees a change only when the TTL runs out, so render it with 0.
   */
  authCacheTtlSeconds?: number;
  /**
   * HMC's transport agent (transport/agent.ts): where it listens for MX mail bearing a stamp, for submitted
   * mail (after-queue content filters) and for deliveries to mailboxes whose auto-reply answers (a transport),
   * and the ports of the two Postfix listeners it hands mail to (reinjection: no filter, no address mapping;
   * replies: address mapping, no filter). Both accept only from `mynetworks`.
   */
  transportAgent?: AgentPorts;
}

export interface AgentPorts {
  /** Address the agent listens on (default: the data plane's listen address). */
  host?: string;
  mxPort: number;
  submissionPort: number | null;
  /** Deliveries to mailboxes with an answering auto-reply (Postfix's hmcdeliver transport, one recipient each). */
  deliverPort: number;
  reinjectPort: number;
  replyPort: number;
}

/** What `render` wrote and what `up`/`down` read back (`dataplane.json`). */
export interface Manifest {
  version: 1;
  server: { id: string; name: string };
  dir: string;
  postfixConfigDir: string;
  postfixPidFile: string;
  dovecotConfig: string;
  dovecotPidFile: string;
  logDir: string;
  listen: string;
  /** TCP ports that accept once the instances are up (SMTP, and LMTP/IMAP/POP3/submission when on TCP). */
  ports: { smtp: number; lmtp: number | null; imap: number; pop3: number | null; submission: number | null };
  /** The transport agent's ports (null: Postfix delivers without it). `up` waits for Postfix's two, not the agent's. */
  agent: (Required<AgentPorts> & { hostname: string }) | null;
  mailRoot: string;
  mailUid: number;
  mailGid: number;
  /** SQLite: the database file, which `up` makes group-writable for the postfix group (WAL side files). */
  sqlitePath: string | null;
}

export interface ServerRow {
  id: string;
  name: string;
  lmtp_endpoint: string;
  imap_endpoint: string;
  pop_endpoint: string | null;
  mail_root: string;
}

/** Where Dovecot shows the mailboxes a user was given full access to: `Shared/<owner's name>/<folder>`. */
const SHARED_PREFIX = 'Shared/';
/** Where Dovecot shows the organization's public folders: `Public/<path>`. */
export const PUBLIC_PREFIX = 'Public/';
/** An organization's public folders on a mail server live under `<mail root>/public/<org>` (public-folders.ts). */
export const publicRoot = (mailRoot: string) => join(mailRoot, 'public');
/** Seconds a running IMAP session may act on an ACL it read before; a revoke reaches open sessions within it. */
const ACL_CACHE_SECS = 5;
/** Dovecot's trustee → owner index of shared mailboxes (acl_shared_dict) for a mail root. */
export const sharedMailboxesDict = (mailRoot: string) => join(mailRoot, 'shared-mailboxes.db');

/** A path written into a config file: absolute, no whitespace, quotes, `$`, `%` or `#`. */
const SAFE_PATH = /^\/[A-Za-z0-9._/@+=,:-]*$/;
/** A database name, user or host in a connect string. */
const SAFE_WORD = /^[A-Za-z0-9._-]+$/;

function safePath(p: string, what: string): string {
  const abs = resolve(p);
  if (!SAFE_PATH.test(abs)) throw Errors.invalidRequest(`${what} "${abs.slice(0, 100)}" may contain only letters, digits and . _ / @ + = , : -`);
  return abs;
}

function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw Errors.invalidRequest(`${what} must be a port 1-65535, got ${n}`);
  return n;
}

/** `host:port` with an IP address or a host name (IPv6 in brackets), for listeners HMC points Postfix at. */
function hostPort(s: string, what: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d+)$/.exec(s);
  if (!m) throw Errors.invalidRequest(`${what} must be host:port, got "${s.slice(0, 100)}"`);
  return `${m[1]}:${port(Number(m[2]), what)}`;
}

/** A relayhost: `host`, `host:port`, `[host]` or `[host]:port` (brackets: no MX lookup). */
function relayHost(s: string): string {
  if (!/^(\[[0-9A-Za-z:.-]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(s)) throw Errors.invalidRequest(`the relayhost must be host[:port] or [host][:port], got "${s.slice(0, 100)}"`);
  return s;
}

/** The port of a canonical `host:port` / `inet:host:port` endpoint (resources/model.ts). */
function endpointPort(endpoint: string, what: string): number {
  const m = /:(\d+)$/.exec(endpoint);
  if (!m) throw Errors.invalidRequest(`${what} "${endpoint}" has no port`);
  return port(Number(m[1]), what);
}

/** PostgreSQL connection fields from a postgres:// URL, refusing characters the config files cannot carry. */
export function pgConnection(url: string): { host: string; port: number; dbname: string; user: string; password: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw Errors.invalidRequest('the database URL is not a URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw Errors.invalidRequest('the database URL must be postgres://');
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const dbname = decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres';
  const user = decodeURIComponent(u.username) || 'postgres';
  const password = decodeURIComponent(u.password);
  for (const [k, v] of Object.entries({ host, dbname, user })) {
    if (!SAFE_WORD.test(v) && !(k === 'host' && isIP(v) === 6)) throw Errors.invalidRequest(`the database ${k} "${v}" may contain only letters, digits and . _ -`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\s"'\\$%#\u0000-\u001f]/.test(password)) throw Errors.invalidRequest('the database password may not contain spaces, quotes, backslashes, $, % or #');
  return { host, port: u.port ? Number(u.port) : 5432, dbname, user, password };
}

/** The postfix group's id (file ownership for the lookup files, which may hold the database password). */
function postfixGid(): number | null {
  try {
    const line = execFileSync('getent', ['group', 'postfix'], { encoding: 'utf8' });
    const gid = Number(line.split(':')[2]);
    return Number.isInteger(gid) ? gid : null;
  } catch {
    return null;
  }
}

/** Read the server by name and write its data plane configuration to `opts.outDir`. */
export async function renderDataplane(db: Db, serverName: string, opts: RenderOptions): Promise<Manifest> {
  const server = (await db.selectFrom('mail_servers').select(['id', 'name', 'lmtp_endpoint', 'imap_endpoint', 'pop_endpoint', 'mail_root'])
    .where('name', '=', serverName).executeTakeFirst()) as ServerRow | undefined;
  if (!server) throw Errors.notFound(`no mail server named "${serverName}"`);
  const files = renderFiles(server, opts);
  const dir = files.manifest.dir;
  const gid = postfixGid();
  for (const d of ['', 'postfix', 'postfix/etc', 'postfix/spool', 'dovecot', 'dovecot/run', 'dovecot/state', 'log']) {
    mkdirSync(join(dir, d), { recursive: true });
    chmodSync(join(dir, d), 0o755); // the postfix user and the mail uid pass through
  }
  for (const [rel, f] of Object.entries(files.files)) {
    const p = join(dir, rel);
    writeFileSync(p, f.text, { mode: f.mode });
    chmodSync(p, f.mode);
    if (f.group === 'postfix' && gid !== null && process.getuid?.() === 0) chownSync(p, 0, gid);
  }
  return files.manifest;
}

interface OutFile {
  text: string;
  mode: number;
  group?: 'postfix';
}

/** The configuration files (path relative to outDir → content); pure, for tests and `renderDataplane`. */
export function renderFiles(server: ServerRow, opts: RenderOptions): { manifest: Manifest; files: Record<string, OutFile> } {
  const dir = safePath(opts.outDir, 'the output directory');
  const listen = opts.listen ?? '127.0.0.1';
  if (isIP(listen) === 0) throw Errors.invalidRequest(`listen address "${listen}" must be an IP address`);
  const v6 = isIP(listen) === 6;
  const anyAddr = listen === '0.0.0.0' || listen === '::';
  const hostname = opts.hostname ?? `${server.name.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}.hmc.invalid`;
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i.test(hostname)) throw Errors.invalidRequest(`hostname "${hostname}" must be a fully-qualified domain name`);
  const mailUid = opts.mailUid ?? 5000;
  const mailGid = opts.mailGid ?? mailUid;
  for (const [k, v] of Object.entries({ mailUid, mailGid })) {
    if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 2) throw Errors.invalidRequest(`${k} must be a positive numeric id (Dovecot refuses 0), got ${v}`);
  }
  if (!opts.plaintextAuth && !(opts.tlsCert && opts.tlsKey)) {
    throw Errors.invalidRequest('give a TLS certificate and key, or allow plaintext logins (tests and development only)');
  }
  const tlsCert = opts.tlsCert ? safePath(opts.tlsCert, 'the TLS certificate') : null;
  const tlsKey = opts.tlsKey ? safePath(opts.tlsKey, 'the TLS key') : null;
  const smtpPort = port(opts.smtpPort, 'the SMTP port');
  const imapPort = endpointPort(server.imap_endpoint, 'the IMAP endpoint');
  const pop3Port = server.pop_endpoint ? endpointPort(server.pop_endpoint, 'the POP3 endpoint') : null;
  const lmtpUnix = server.lmtp_endpoint.startsWith('unix:') ? safePath(server.lmtp_endpoint.slice(5), 'the LMTP socket') : null;
  const lmtpPort = lmtpUnix ? null : endpointPort(server.lmtp_endpoint, 'the LMTP endpoint');
  const submissionPort = opts.submissionPort === undefined ? null : port(opts.submissionPort, 'the submission port');
  const agent = opts.transportAgent ? {
    host: opts.transportAgent.host ?? listen,
    mxPort: port(opts.transportAgent.mxPort, 'the agent\'s MX port'),
    submissionPort: submissionPort === null || opts.transportAgent.submissionPort === null ? null : port(opts.transportAgent.submissionPort, 'the agent\'s submission port'),
    deliverPort: port(opts.transportAgent.deliverPort, 'the agent\'s delivery port'),
    reinjectPort: port(opts.transportAgent.reinjectPort, 'the reinjection port'),
    replyPort: port(opts.transportAgent.replyPort, 'the auto-reply port'),
    hostname,
  } : null;
  if (agent && isIP(agent.host) !== 4) throw Errors.invalidRequest(`the agent's address "${agent.host}" must be an IPv4 address`);
  const taken = [smtpPort, imapPort, pop3Port, lmtpPort, submissionPort, ...(agent ? [agent.mxPort, agent.submissionPort, agent.deliverPort, agent.reinjectPort, agent.replyPort] : [])]
    .filter((p): p is number => p !== null);
  if (new Set(taken).size !== taken.length) throw Errors.invalidRequest(`the SMTP, submission, LMTP, IMAP, POP3 and agent ports must differ: ${taken.join(', ')}`);
  const relayhost = opts.relayhost === undefined ? null : relayHost(opts.relayhost);
  const policy = opts.policyService === undefined ? null : `inet:${hostPort(opts.policyService, 'the policy service')}`;
  const messageSizeLimit = opts.messageSizeLimit ?? 100 * 2 ** 20;
  if (!Number.isInteger(messageSizeLimit) || messageSizeLimit < 1024 || messageSizeLimit > 2 ** 31) throw Errors.invalidRequest('the message size limit must be 1 KiB - 2 GiB');
  if (!isAbsolute(server.mail_root)) throw Errors.invalidRequest('the mail root must be absolute');

  const pf = join(dir, 'postfix');
  const etc = join(pf, 'etc');
  const dv = join(dir, 'dovecot');
  const logDir = join(dir, 'log');
  const sqlitePath = 'sqlitePath' in opts.database ? safePath(opts.database.sqlitePath, 'the SQLite database') : null;
  const pg = 'url' in opts.database ? pgConnection(opts.database.url) : null;

  // ---- Postfix lookup tables: one query per map on the dp_* views; Postfix quotes %s ----
  const mapKind = sqlitePath ? 'sqlite' : 'pgsql';
  const mapHead = sqlitePath
    ? `dbpath = ${sqlitePath}\n`
    : `hosts = inet:${pg!.host.includes(':') ? `[${pg!.host}]` : pg!.host}:${pg!.port}\nuser = ${pg!.user}\npassword = ${pg!.password}\ndbname = ${pg!.dbname}\n`;
  // PostgreSQL: the lookup functions of migrations 0014 and 0021 (they keep one generic plan; the bare view
  // queries are planned anew per lookup, 3-40 ms). SQLite: the queries themselves, on views whose joins run
  // key-first (0021). %s is the whole key, %u its local part,
  // %d its domain (a key without @ makes a %d query return nothing).
  const target = "'%u@' || t.name";
  // an address map's key is '%u@%d', not '%s': Postfix skips the query for a key with no local part or no
  // domain (a bare domain, '@domain', a bare local part), which every address map would miss anyway; the
  // transport and alias maps are asked those forms for every recipient
  const key = "'%u@%d'";
  // with the agent: a recipient whose auto-reply answers now goes to the agent (hmcdeliver, master.cf), which
  // delivers to the mailbox's LMTP itself and answers the sender (migration 0022); every other one straight to LMTP
  const via = agent ? `hmcdeliver:[${agent.host}]:${agent.deliverPort}` : null;
  const maps: Record<string, string> = pg
    ? {
      'dp-virtual-domains.cf': "SELECT * FROM dp_pf_domain('%s')",
      'dp-relay-domains.cf': "SELECT * FROM dp_pf_relay_domain('%s')",
      'dp-virtual-mailboxes.cf': `SELECT * FROM dp_pf_mailbox(${key})`,
      'dp-transport.cf': via ? `SELECT * FROM dp_pf_transport_via(${key}, '${via}')` : `SELECT * FROM dp_pf_transport(${key})`,
      'dp-virtual-aliases.cf': `SELECT * FROM dp_pf_alias(${key})`,
      'dp-sender-logins.cf': `SELECT * FROM dp_pf_sender_login(${key})`,
      'dp-public-folders.cf': `SELECT * FROM dp_pf_public_folder(${key})`,
      'dp-public-folder-transport.cf': `SELECT * FROM dp_pf_public_transport(${key})`,
    }
    : {
      'dp-virtual-domains.cf': "SELECT domain FROM dp_virtual_domains WHERE domain = '%s'",
      'dp-relay-domains.cf': "SELECT domain FROM dp_relay_domains WHERE domain = '%s'",
      'dp-virtual-mailboxes.cf': `SELECT maildir FROM dp_virtual_mailbox_maps WHERE address = ${key}`,
      'dp-transport.cf': via
        ? `SELECT CASE WHEN EXISTS (SELECT 1 FROM dp_auto_reply_addresses r WHERE r.address = ${key}) THEN '${via}' ELSE transport END FROM dp_transport WHERE address = ${key}`
        : `SELECT transport FROM dp_transport WHERE address = ${key}`,
      // groups and forwarding, then domain aliases: user@alias → user@target, only where the target receives
      'dp-virtual-aliases.cf': `SELECT destination FROM dp_virtual_aliases WHERE address = ${key} UNION ALL `
        + `SELECT ${target} FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_live_orgs o ON o.id = a.org_id `
        + `WHERE a.name = '%d' AND t.org_id = a.org_id AND (EXISTS (SELECT 1 FROM dp_mailbox_addresses x WHERE x.address = ${target}) `
        + `OR EXISTS (SELECT 1 FROM dp_virtual_aliases y WHERE y.address = ${target}))`,
      // owners and send-as trustees of an envelope sender, the domain-alias spelling included
      'dp-sender-logins.cf': `SELECT login FROM dp_sender_logins WHERE address = ${key} UNION `
        + `SELECT s.login FROM accepted_domains a JOIN accepted_domains t ON t.domain_id = a.alias_of JOIN dp_sender_logins s ON s.address = ${target} `
        + "WHERE a.name = '%d' AND t.org_id = a.org_id",
      // the alias query's gate (virtual_alias_maps is pipemap:{gate, aliases}): the key itself where an alias
      // answer is possible (a group's address, a forwarding mailbox's address, an address on an alias domain),
      // else nothing and the alias query is not run. SQLite compiles each lookup anew and the alias query is
      // the union of every alias kind: 520 µs against 17 µs for this one (bench --suite dataplane, maps)
      'dp-virtual-alias-gate.cf': aliasGateSql(key, "'%d'"),
      // mail-enabled public folders (dataplane/public-folders.ts): accepted and routed like mailboxes
      'dp-public-folders.cf': `SELECT folder_id FROM dp_public_folder_addresses WHERE address = ${key}`,
      'dp-public-folder-transport.cf': `SELECT transport FROM dp_public_folder_transport WHERE address = ${key}`,
    };
  // PostgreSQL maps go through Postfix's proxymap: its few long-lived processes hold one connection per map,
  // where each smtpd, cleanup and trivial-rewrite process would open its own (measured: dozens of backends under
  // load, past PostgreSQL's default 100 connections, so lookups failed with 451 4.3.0)
  const mapRef = (f: string) => `${pg ? 'proxy:' : ''}${mapKind}:${join(etc, f)}`;
  // ... except trivial-rewrite's own: it is one long-lived process serving every resolve (two lookups each,
  // the recipient's domain class and its transport, about half of all lookups), so it holds three connections
  // of its own and spares those lookups the proxymap hop
  const rewriteMaps = pg
    ? [`virtual_mailbox_domains = ${mapKind}:${join(etc, 'dp-virtual-domains.cf')}`, `relay_domains = ${mapKind}:${join(etc, 'dp-relay-domains.cf')}`,
      `transport_maps = ${mapKind}:${join(etc, 'dp-transport.cf')}, ${mapKind}:${join(etc, 'dp-public-folder-transport.cf')}`]
      .map((o) => `  -o { ${o} }\n`).join('')
    : '';
  const mailboxMaps = `${mapRef('dp-virtual-mailboxes.cf')}, ${mapRef('dp-public-folders.cf')}`;
  const aliasMaps = pg ? mapRef('dp-virtual-aliases.cf') : `pipemap:{${mapRef('dp-virtual-alias-gate.cf')}, ${mapRef('dp-virtual-aliases.cf')}}`;
  const files: Record<string, OutFile> = {};
  for (const [f, q] of Object.entries(maps)) {
    files[`postfix/etc/${f}`] = { text: `# HMC data plane lookup (generated by hmc dataplane render)\n${mapHead}query = ${q}\n`, mode: 0o640, group: 'postfix' };
  }

  const sasl = join(dv, 'run', 'auth-postfix');
  const quotaStatus = join(dv, 'run', 'quota-status');
  // MX: a full mailbox is refused at RCPT by Dovecot's quota-status (no bounce later), then HMC's limits
  const mxRecipient = ['reject_unauth_destination', `check_policy_service unix:${quotaStatus}`, ...(policy ? [`check_policy_service ${policy}`] : [])].join(', ');
  const smtpdTls = tlsCert && tlsKey
    ? `smtpd_tls_cert_file = ${tlsCert}\nsmtpd_tls_key_file = ${tlsKey}\nsmtpd_tls_security_level = may\n`
    : 'smtpd_tls_security_level = none\n';
  files['postfix/etc/main.cf'] = {
    mode: 0o644,
    text: `# HMC data plane: Postfix for mail server ${server.name} (generated by hmc dataplane render)
compatibility_level = 3.6
queue_directory = ${join(pf, 'spool')}
data_directory = ${join(pf, 'data')}
mail_owner = postfix
setgid_group = postdrop
maillog_file = ${join(logDir, 'postfix.log')}
maillog_file_prefixes = ${dir}
syslog_name = postfix-hmc
myhostname = ${hostname}
mydomain = ${hostname.split('.').slice(1).join('.')}
myorigin = $myhostname
mydestination =
local_transport = error:5.1.1 local delivery disabled
alias_maps =
alias_database =
biff = no
inet_interfaces = ${anyAddr ? 'all' : listen}
inet_protocols = ${v6 ? 'all' : 'ipv4'}
mynetworks = ${v6 ? '[::1]/128' : '127.0.0.0/8'}
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
${smtpdTls}
# hosted domains and mailboxes: unknown recipients are refused at RCPT (550 5.1.1)
virtual_mailbox_domains = ${mapRef('dp-virtual-domains.cf')}
virtual_mailbox_maps = ${mailboxMaps}
# groups, forwarding and domain aliases (the alias domains are virtual_mailbox_domains: their addresses are
# validated through this map); an empty virtual_alias_domains keeps bare domains out of the alias lookups
virtual_alias_domains =
virtual_alias_maps = ${aliasMaps}
relay_domains = ${mapRef('dp-relay-domains.cf')}
# a relay domain is exactly an accepted relay domain, never its subdomains (Postfix's default also asks the
# table for every parent domain of every remote address: a database lookup each)
# no sanity warnings: with them trivial-rewrite asks relay_domains (the domain and each parent) for every hosted
# recipient it resolves, only to warn when a domain is listed in both; a domain has one type in HMC. Measured on
# PostgreSQL: 11 database lookups a message before, 7 after (bench --suite dataplane)
helpful_warnings = no
parent_domain_matches_subdomains = debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,smtpd_access_maps
relay_recipient_maps =
# one copy per mailbox address: cleanup removes duplicate recipients by the rewritten address alone (with the
# default, by original and rewritten address, so mail to a group and to one of its members, or to a forwarding
# mailbox and its target, was delivered twice). Postfix then records no original recipient (ORCPT, X-Original-To)
enable_original_recipient = no
${relayhost ? `relayhost = ${relayhost}\n` : ''}message_size_limit = ${messageSizeLimit}
mailbox_size_limit = 0
# each address to the LMTP endpoint of its mailbox's (or public folder's) mail server
transport_maps = ${mapRef('dp-transport.cf')}, ${mapRef('dp-public-folder-transport.cf')}
# only reached by an address that lost its route after RCPT (mailbox disabled or moved meanwhile): a socket
# nothing listens on, so the mail is deferred and retried, not bounced. (An error: or retry: transport here
# would make smtpd answer every unknown recipient with its text instead of "User unknown".)
virtual_transport = lmtp:unix:${join(pf, 'spool', 'no-mailstore-route')}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = ${mxRecipient}
${policy ? `smtpd_end_of_data_restrictions = check_policy_service ${policy}\n` : ''}${agent ? '# the agent delivers one recipient at a time (it streams the message to that mailbox\'s LMTP)\nhmcdeliver_destination_recipient_limit = 1\n' : ''}# authenticated submission (master.cf): SASL through Dovecot, envelope senders from dp_sender_logins
smtpd_sasl_type = dovecot
smtpd_sasl_path = ${sasl}
smtpd_sender_login_maps = ${mapRef('dp-sender-logins.cf')}
`,
  };
  const listenAt = v6 ? `[${listen}]` : listen;
  const agentAt = agent ? `[${agent.host}]` : '';
  const filterTo = (p: number | null) => (agent && p !== null ? `  -o content_filter=hmc-agent:${agentAt}:${p}\n` : '');
  // MX mail goes through the agent only when it bears a stamp (the agent keeps a genuine one, drops the rest):
  // The MX smtpd validates a recipient by asking the alias maps, then the mailbox maps: two lookups for every
  // mailbox recipient, of which the alias one answers nothing. With the alias maps last among its mailbox maps
  // it accepts exactly the same addresses with one (an alias costs three). Only smtpd's own check: cleanup
  // expands aliases with main.cf's virtual_alias_maps.
  const mxRecipientMaps = `  -o virtual_alias_maps=\n  -o { virtual_mailbox_maps = ${mailboxMaps}, ${aliasMaps} }\n`;
  // a FILTER action of the MX listener's own cleanup, for the message's top-level header only
  const mxCleanup = agent ? '  -o cleanup_service_name=cleanup-mx\n' : '';
  // the agent hands mail back here: loopback (mynetworks) only, nothing checked twice
  const backFromAgent = (p: number, name: string, mappings: boolean) => `${listenAt}:${p} inet n - n - 20 smtpd
  -o syslog_name=postfix-hmc/${name}
  -o content_filter=
  -o receive_override_options=no_header_body_checks,no_milters${mappings ? '' : ',no_unknown_recipient_checks,no_address_mappings'}
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=
  -o smtpd_end_of_data_restrictions=
  -o smtpd_sasl_auth_enable=no
`;
  // connections to the agent are kept and reused (Postfix caches only under backlog by default): a new one
  // waits 100 ms for the agent's greeting (smtp-server's early-talker check), a reused one does not (measured,
  // one message at a time: 119 ms through the agent without, 20 ms with). Postfix matches the bare host of
  // the next hop ("[host]" and "[host]:port" never matched)
  const agentDestinations = agent?.host ?? '';
  const toAgent = (name: string) => `${name} unix  -       -       n       -       20      smtp
  -o syslog_name=postfix-hmc/${name === 'hmc-agent' ? 'agent' : name}
  -o smtp_tls_security_level=none
  -o smtp_send_xforward_command=no
  -o disable_mime_output_conversion=yes
  -o smtp_data_done_timeout=1200s
  -o smtp_connection_cache_destinations=${agentDestinations}
`;
  const agentServices = agent ? `# HMC's transport agent (transport/agent.ts): after-queue content filter (stamped MX mail, submitted mail),
# delivery to mailboxes whose auto-reply answers, and the listeners it hands mail to
${toAgent('hmc-agent')}${toAgent('hmcdeliver')}cleanup-mx unix n       -       n       -       0       cleanup
  -o header_checks=regexp:${join(etc, 'dp-stamp-filter.regexp')}
  -o mime_header_checks=
  -o nested_header_checks=
${backFromAgent(agent.reinjectPort, 'reinject', false)}${backFromAgent(agent.replyPort, 'agent-reply', true)}` : '';
  if (agent) {
    files['postfix/etc/dp-stamp-filter.regexp'] = {
      mode: 0o644,
      text: `# HMC data plane: MX mail with an X-HMC-Stamp field goes through the transport agent (generated by hmc dataplane render)
/^X-HMC-Stamp[[:space:]]*:/ FILTER hmc-agent:${agentAt}:${agent.mxPort}
`,
    };
  }
  files['postfix/etc/master.cf'] = {
    mode: 0o644,
    text: `# HMC data plane: Postfix services (generated by hmc dataplane render). chroot = n everywhere.
# service type  private unpriv  chroot  wakeup  maxproc command
${listenAt}:${smtpPort} inet n - n - - smtpd
${mxRecipientMaps}${mxCleanup}${submissionPort === null ? '' : `${listenAt}:${submissionPort} inet n - n - - smtpd
${filterTo(agent?.submissionPort ?? null)}  -o syslog_name=postfix-hmc/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=${tlsCert ? 'encrypt' : 'none'}
  -o smtpd_tls_auth_only=${tlsCert ? 'yes' : 'no'}
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch,permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=${policy ? `check_policy_service,${policy},` : ''}permit_sasl_authenticated,reject
`}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
${rewriteMaps}bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
${agentServices}`,
  };

  // ---- Dovecot: passdb/userdb on dp_users, only this server's users ----
  const serverId = `'${server.id.replace(/'/g, "''")}'`;
  const serverFilter = `server_id = ${serverId}`;
  // the plan's protocol switches (%s is Dovecot's service: imap, pop3, smtp for Postfix's SASL, …); a user
  // whose mailbox lives on another mail server is proxied there (the login process forwards the password)
  const elsewhere = `server_id <> ${serverId}`;
  const passwordQuery = pg ? `SELECT username AS user, password, proxy, host, port FROM dp_dv_passdb('%Lu', '%s', ${serverId})` : 'SELECT login AS user, password, '
    + `CASE WHEN ${elsewhere} THEN 'y' END AS proxy, CASE WHEN ${elsewhere} THEN imap_host END AS host, `
    + `CASE WHEN ${elsewhere} THEN (CASE WHEN '%s' = 'pop3' THEN pop_port ELSE imap_port END) END AS port `
    + "FROM dp_users WHERE login = '%Lu' AND ((allow_imap = 1 AND '%s' = 'imap') OR (allow_pop3 = 1 AND '%s' = 'pop3') "
    + "OR (allow_submission = 1 AND '%s' = 'smtp') OR '%s' NOT IN ('imap', 'pop3', 'smtp'))";
  const connect = sqlitePath
    ? `driver = sqlite\nconnect = ${sqlitePath}\n`
    : `driver = pgsql\nconnect = host=${pg!.host} port=${pg!.port} dbname=${pg!.dbname} user=${pg!.user}${pg!.password ? ` password=${pg!.password}` : ''}\n`;
  files['dovecot/sql.conf.ext'] = {
    mode: 0o600,
    text: `# HMC data plane: Dovecot SQL lookups (generated by hmc dataplane render)
${connect}default_pass_scheme = BLF-CRYPT
password_query = ${passwordQuery}
user_query = SELECT home, ${mailUid} AS uid, ${mailGid} AS gid, '*:bytes=' || quota_bytes AS quota_rule, quota_warning FROM ${pg ? `dp_dv_userdb('%Lu', ${serverId})` : `dp_userdb WHERE name = '%Lu' AND ${serverFilter}`}
iterate_query = SELECT name AS user FROM dp_userdb_names WHERE ${serverFilter}
`,
  };
  // public folders (dataplane/public-folders.ts): a login gets its organization's public tree on this server
  // and its ACL identities (a passdb that authenticates nobody, only adds userdb fields); a mail-enabled
  // folder's address is a userdb entry of its own whose INBOX is the folder (quota = prohibitPostQuota)
  const pub = `'${safePath(publicRoot(server.mail_root), 'the public folder root')}/' || org_id || '`;
  const publicLogin = pg ? "dp_dv_public('%Lu')" : `(${publicAclGroupsSql("'%Lu'", 'sqlite')})`;
  const folderUser = pg ? `dp_dv_public_userdb('%Lu', ${serverId})` : `dp_public_folder_addresses WHERE address = '%Lu' AND ${serverFilter}`;
  files['dovecot/sql-public.conf.ext'] = {
    mode: 0o600,
    text: `# HMC data plane: Dovecot SQL lookups for public folders (generated by hmc dataplane render)
${connect}password_query = SELECT login AS user, NULL AS password, 'Y' AS noauthenticate, 'maildir:' || ${pub}/tree:LAYOUT=fs:INDEXPVT=~/public' AS "userdb_namespace/public/location", 'no' AS "userdb_namespace/public/disabled", acl_groups AS userdb_acl_groups FROM ${publicLogin} p
user_query = SELECT ${pub}/delivery/' || folder_id AS home, ${mailUid} AS uid, ${mailGid} AS gid, 'maildir:~/empty:LAYOUT=fs:INBOX=' || ${pub}/folders/' || folder_id AS mail, '*:bytes=' || quota_bytes AS quota_rule, CASE WHEN warning_bytes > 0 AND warning_bytes < quota_bytes THEN 'bytes=' || warning_bytes || ' quota-warning %Lu ' || warning_bytes END AS quota_warning FROM ${folderUser}
iterate_query = SELECT address AS user FROM dp_public_folder_addresses WHERE ${serverFilter}
`,
  };
  // positive answers only: a name created a moment ago is found at once (a cached "unknown" would make LMTP
  // bounce mail Postfix accepted); the platform flushes after every change (dataplane/auth-cache.ts)
  const ttl = opts.authCacheTtlSeconds ?? 300;
  if (!Number.isInteger(ttl) || ttl < 0) throw Errors.invalidRequest('the auth cache TTL must be a whole number of seconds, 0 or more');
  const authCache = ttl === 0
    ? '# no auth cache: a password, state or quota change is seen by the next lookup\nauth_cache_size = 0\n'
    : `# auth cache (flushed by the platform after every change; the TTL bounds a change made behind its back)\nauth_cache_size = 16M\nauth_cache_ttl = ${ttl} secs\nauth_cache_negative_ttl = 0\n`;
  const protocols = ['imap', 'lmtp', ...(pop3Port ? ['pop3'] : [])].join(' ');
  const ssl = tlsCert && tlsKey ? `ssl = required\nssl_cert = <${tlsCert}\nssl_key = <${tlsKey}\n` : 'ssl = no\n';
  const lmtpListener = lmtpUnix
    ? `  unix_listener ${lmtpUnix} {\n    mode = 0666\n  }\n`
    : `  inet_listener lmtp {\n    port = ${lmtpPort}\n  }\n`;
  files['dovecot/dovecot.conf'] = {
    mode: 0o644,
    text: `# HMC data plane: Dovecot for mail server ${server.name} (generated by hmc dataplane render)
instance_name = hmc-${server.id}
base_dir = ${join(dv, 'run')}
state_dir = ${join(dv, 'state')}
log_path = ${join(logDir, 'dovecot.log')}
listen = ${listen}
protocols = ${protocols}
hostname = ${hostname}
postmaster_address = postmaster@${hostname}
${ssl}disable_plaintext_auth = ${opts.plaintextAuth ? 'no' : 'yes'}
auth_mechanisms = plain login
${authCache}${opts.authPenalty === false ? '# brute-force defences off (tests only)\nauth_failure_delay = 0\n' : ''}
mail_uid = ${mailUid}
mail_gid = ${mailGid}
first_valid_uid = ${mailUid}
last_valid_uid = ${mailUid}
first_valid_gid = ${mailGid}
last_valid_gid = ${mailGid}
mail_location = maildir:~/Maildir

# first: the public-folder fields of a login (authenticates nobody); then the password
passdb {
  driver = sql
  args = ${join(dv, 'sql-public.conf.ext')}
  result_success = continue
  result_failure = continue
}
passdb {
  driver = sql
  args = ${join(dv, 'sql.conf.ext')}
}
userdb {
  driver = sql
  args = ${join(dv, 'sql.conf.ext')}
}
# mail-enabled public folders, by address (LMTP delivery, quota-status)
userdb {
  driver = sql
  args = ${join(dv, 'sql-public.conf.ext')}
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}

# full access (mail/full-access.ts): another user's mailbox as Shared/<its name>/… (its INBOX is the folder
# Shared/<name> itself, also selectable as Shared/<name>/INBOX). Opening one needs an ACL entry for the
# logged-in user on it, which only HMC sets (dataplane/acl.ts): owners hold every right but admin (global
# ACL file), so nobody shares a mailbox over IMAP, least of all with another organization. \\Seen is kept
# per reader (INDEXPVT); a mailbox on another mail server does not resolve here and so cannot be opened.
namespace shared {
  type = shared
  separator = /
  prefix = ${SHARED_PREFIX}%%u/
  location = maildir:%%h/Maildir:INDEXPVT=~/shared/%%u
  subscriptions = no
  list = children
}

# public folders (dataplane/public-folders.ts): the organization's tree on this server as Public/…, each
# folder's dovecot-acl holding \`group=<id>\` entries matched against the login's acl_groups (its user id and
# groups); \\Seen is kept per reader (INDEXPVT). Off unless the login's passdb lookup turned it on.
namespace public {
  type = public
  separator = /
  prefix = ${PUBLIC_PREFIX}
  location = maildir:~/no-public-folders:LAYOUT=fs
  disabled = yes
  subscriptions = no
  list = children
}

# per-user hard quota from userdb (dp_userdb.quota_bytes = prohibit_send_receive_quota): LMTP refuses at
# RCPT a mailbox already full (lmtp_rcpt_check_quota) and at DATA a message that does not fit (552 5.2.2);
# crossing issueWarningQuota runs quota-warning once (userdb quota_warning), which delivers a notice
mail_plugins = $mail_plugins quota acl
protocol imap {
  mail_plugins = $mail_plugins imap_quota imap_acl
}
protocol lmtp {
  lmtp_rcpt_check_quota = yes
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=0
  quota_grace = 0
  quota_status_success = DUNNO
  quota_status_nouser = DUNNO
  quota_status_overquota = "552 5.2.2 Mailbox is full"
  # ACLs: per-folder dovecot-acl files plus the global file; a folder without its own ACL follows INBOX's;
  # a session re-reads a changed ACL within cache_secs; the trustee→owner index behind LIST of Shared/
  # lives in the mail root, which the mail uid may write (dotlocks beside the file)
  acl = vfile:${join(dv, 'global-acl')}:cache_secs=${ACL_CACHE_SECS}
  acl_defaults_from_inbox = yes
  acl_shared_dict = file:${safePath(sharedMailboxesDict(server.mail_root), 'the mail root')}
}
service quota-status {
  executable = quota-status -p postfix
  unix_listener ${quotaStatus} {
    mode = 0666
  }
  client_limit = 1
}
service quota-warning {
  executable = script ${join(dv, 'quota-warning.sh')}
  user = root
  unix_listener quota-warning {
    mode = 0666
  }
}
# SASL for Postfix's submission listener
service auth {
  unix_listener ${sasl} {
    mode = 0660
    user = postfix
    group = postfix
  }
}
${opts.authPenalty === false ? 'service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n' : ''}
service imap-login {
  inet_listener imap {
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = ${pop3Port ?? 0}
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
${lmtpListener}}
`,
  };

  files['dovecot/global-acl'] = {
    mode: 0o644,
    text: `# HMC data plane: ACLs for every mailbox (generated by hmc dataplane render). The owner has every right but
# admin: only HMC changes ACLs (doveadm acl set), never a user over IMAP (SETACL).
* owner lrwstipekx
`,
  };

  files['dovecot/quota-warning.sh'] = {
    mode: 0o755,
    text: `#!/bin/sh
# HMC data plane: the issueWarningQuota notice (generated by hmc dataplane render). Dovecot runs it once when
# a delivery takes the mailbox past the threshold: quota-warning USER THRESHOLD_BYTES. The notice itself is
# delivered without quota enforcement, so it arrives even when little room is left.
set -eu
user="$1"
threshold="$2"
/usr/lib/dovecot/dovecot-lda -c ${join(dv, 'dovecot.conf')} -d "$user" -o "plugin/quota=count:User quota:noenforcing" <<EOF
From: Mail Administrator <postmaster@${hostname}>
To: <$user>
Subject: Your mailbox is almost full
Auto-Submitted: auto-generated
Precedence: bulk
Content-Type: text/plain; charset=utf-8

Your mailbox has passed its warning size of $threshold bytes.
Delete or archive messages, or ask your administrator for more space:
when it is full you will no longer receive mail.
EOF
`,
  };

  const manifest: Manifest = {
    version: 1,
    server: { id: server.id, name: server.name },
    dir,
    postfixConfigDir: etc,
    postfixPidFile: join(pf, 'spool', 'pid', 'master.pid'),
    dovecotConfig: join(dv, 'dovecot.conf'),
    dovecotPidFile: join(dv, 'run', 'master.pid'),
    logDir,
    listen,
    ports: { smtp: smtpPort, lmtp: lmtpPort, imap: imapPort, pop3: pop3Port, submission: submissionPort },
    agent,
    mailRoot: server.mail_root,
    mailUid,
    mailGid,
    sqlitePath,
  };
  files['dataplane.json'] = { mode: 0o600, text: `${JSON.stringify(manifest, null, 2)}\n` };
  return { manifest, files };
}

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { OptionSpec } from '../args.js';
import type { CommandSpec, Ctx } from '../command.js';
import { EXIT_OK, UsageError } from '../errors.js';
import { toJson } from '../output.js';
import { flag, str } from './shared.js';
import { platformConfig } from './platform.js';
import type { AgentPorts } from '../../dataplane/render.js';

/**
 * The mail data plane (Postfix + Dovecot reading HMC's dp_* views). `render` is a local command that reads
 * the database directly, like init and migrate: the files it writes must name the database itself (SQLite
 * path or PostgreSQL host, database, user and password) for Postfix and Dovecot to connect, which the API
 * neither knows in that form nor should ever hand out, and an operator renders on the host that runs the
 * servers. `up` / `down` only touch the rendered directory. Modules are imported lazily (drivers, fs work).
 */

const DATA_DIR: Record<string, OptionSpec> = {
  'data-dir': str('DIR', 'where the database lives (env HMC_DATA_DIR, default ./data; HMC_DATABASE_URL selects PostgreSQL)'),
};
const JSON_OUT: Record<string, OptionSpec> = { json: flag('print one JSON object') };
const DIR_OPTION: Record<string, OptionSpec> = { dir: { ...str('DIR', 'the directory `hmc dataplane render` wrote'), required: true } };

async function render(ctx: Ctx): Promise<number> {
  const config = platformConfig(ctx);
  const server = ctx.opts.str('server')!;
  const outDir = resolve(ctx.opts.str('out')!);
  const smtpPort = ctx.opts.int('smtp-port', { min: 1, max: 65535 })!;
  const mailUid = ctx.opts.int('mail-uid', { min: 1 });
  const plaintextAuth = ctx.opts.bool('plaintext-auth');
  const tlsCert = ctx.opts.str('tls-cert');
  const tlsKey = ctx.opts.str('tls-key');
  if (!plaintextAuth && !(tlsCert && tlsKey)) throw new UsageError('give --tls-cert and --tls-key, or --plaintext-auth (tests and development only)');
  const { openStore } = await import('../../store/db.js');
  const { renderDataplane } = await import('../../dataplane/render.js');
  const sqlitePath = join(config.dataDir, 'hmc.db');
  if (!config.databaseUrl && !existsSync(sqlitePath)) throw new UsageError(`no database at ${sqlitePath}: run \`hmc init\` first or set --data-dir / HMC_DATABASE_URL`);
  const database = config.databaseUrl ? { url: config.databaseUrl } : { sqlitePath };
  const store = openStore(database, { poolSize: 1 });
  try {
    const m = await renderDataplane(store.db, server, {
      outDir, database, smtpPort, plaintextAuth, tlsCert, tlsKey,
      ...(mailUid !== undefined ? { mailUid } : {}),
      ...(ctx.opts.str('listen') ? { listen: ctx.opts.str('listen') } : {}),
      ...(ctx.opts.str('hostname') ? { hostname: ctx.opts.str('hostname') } : {}),
      ...(ctx.opts.str('submission-port') ? { submissionPort: ctx.opts.int('submission-port', { min: 1, max: 65535 }) } : {}),
      ...(ctx.opts.str('relayhost') ? { relayhost: ctx.opts.str('relayhost') } : {}),
      ...(ctx.opts.str('policy-service') ? { policyService: ctx.opts.str('policy-service') } : {}),
      ...(ctx.opts.str('message-size-limit') ? { messageSizeLimit: ctx.opts.int('message-size-limit', { min: 1024 }) } : {}),
      ...(ctx.opts.bool('no-auth-penalty') ? { authPenalty: false } : {}),
      ...(ctx.opts.str('auth-cache-ttl') ? { authCacheTtlSeconds: ctx.opts.int('auth-cache-ttl', { min: 0 }) } : {}),
      ...agentPorts(ctx),
    });
    if (ctx.json) ctx.out(toJson(m));
    else {
      ctx.out(`Rendered the data plane of mail server ${m.server.name} into ${m.dir}\n`);
      ctx.out(`  SMTP ${m.listen}:${m.ports.smtp}${m.ports.submission ? `, submission ${m.ports.submission}` : ''}, IMAP ${m.ports.imap}, LMTP ${m.ports.lmtp ?? 'unix socket'}${m.ports.pop3 ? `, POP3 ${m.ports.pop3}` : ''}\n`);
      ctx.out(`  Postfix: postfix -c ${m.postfixConfigDir} start; Dovecot: dovecot -c ${m.dovecotConfig}\n`);
      ctx.out(`  or: hmc dataplane up --dir ${m.dir}\n`);
    }
  } finally {
    await store.close();
  }
  return EXIT_OK;
}

/** The transport agent's ports from the render flags: all three of --agent-port, --reinject-port, --reply-port or none. */
function agentPorts(ctx: Ctx): { transportAgent?: AgentPorts } {
  const p = (name: string) => ctx.opts.int(name, { min: 1, max: 65535 });
  const mxPort = p('agent-port');
  const reinjectPort = p('reinject-port');
  const replyPort = p('reply-port');
  if (mxPort === undefined && reinjectPort === undefined && replyPort === undefined) {
    if (ctx.opts.str('agent-submission-port') || ctx.opts.str('agent-deliver-port') || ctx.opts.str('agent-host')) throw new UsageError('--agent-submission-port, --agent-deliver-port and --agent-host need --agent-port');
    return {};
  }
  if (mxPort === undefined || reinjectPort === undefined || replyPort === undefined) throw new UsageError('the transport agent needs --agent-port, --reinject-port and --reply-port together');
  const submissionPort = p('agent-submission-port') ?? (mxPort < 65535 ? mxPort + 1 : undefined);
  if (submissionPort === undefined) throw new UsageError('give --agent-submission-port');
  const deliverPort = p('agent-deliver-port') ?? (mxPort < 65534 ? mxPort + 2 : undefined);
  if (deliverPort === undefined) throw new UsageError('give --agent-deliver-port');
  return { transportAgent: { mxPort, submissionPort, deliverPort, reinjectPort, replyPort, ...(ctx.opts.str('agent-host') ? { host: ctx.opts.str('agent-host') } : {}) } };
}

async function upCommand(ctx: Ctx): Promise<number> {
  const { up } = await import('../../dataplane/instance.js');
  const dir = resolve(ctx.opts.str('dir')!);
  const r = await up(dir);
  if (ctx.json) ctx.out(toJson({ dir, ...r }));
  else ctx.out(r.alreadyUp ? `Already up (${dir}).\n` : `Postfix and Dovecot up in ${r.ms} ms, ports ${r.ports.join(', ')} (${dir}).\n`);
  return EXIT_OK;
}

async function downCommand(ctx: Ctx): Promise<number> {
  const { down } = await import('../../dataplane/instance.js');
  const dir = resolve(ctx.opts.str('dir')!);
  const r = await down(dir);
  if (ctx.json) ctx.out(toJson({ dir, ...r }));
  else ctx.out(r.stopped.length === 0 ? `Nothing was running (${dir}).\n` : `Stopped ${r.stopped.join(' and ')} in ${r.ms} ms (${dir}).\n`);
  return EXIT_OK;
}

export const dataplaneCommands: CommandSpec[] = [
  {
    words: ['dataplane', 'render'],
    summary: 'write Postfix and Dovecot configuration for a mail server (reads the database)',
    options: {
      ...DATA_DIR,
      server: { ...str('NAME', 'the mail server (as registered with `hmc server create`)'), required: true },
      out: { ...str('DIR', 'directory to write into (paths inside the files point here)'), required: true },
      'smtp-port': { ...str('N', 'port of the SMTP (MX) listener'), required: true },
      listen: str('ADDR', 'IP address every listener binds (default 127.0.0.1)'),
      hostname: str('FQDN', 'Postfix myhostname / Dovecot hostname (default <server>.hmc.invalid)'),
      'mail-uid': str('N', 'numeric uid and gid owning the maildirs (default 5000; not 0)'),
      'tls-cert': str('FILE', 'PEM certificate for IMAP/POP3 TLS and SMTP STARTTLS'),
      'tls-key': str('FILE', 'PEM key for --tls-cert'),
      'plaintext-auth': flag('allow logins without TLS (tests and development only)'),
      'submission-port': str('N', 'port of the authenticated submission listener (SASL through Dovecot)'),
      relayhost: str('HOST[:PORT]', 'smarthost for mail to other domains (default: direct delivery)'),
      'policy-service': str('HOST:PORT', "HMC's policy service (HMC_POLICY_LISTEN of `hmc serve`): per-mailbox size, recipient and send-quota limits"),
      'message-size-limit': str('BYTES', 'largest message Postfix accepts at all (default 104857600)'),
      'no-auth-penalty': flag("turn off Dovecot's login failure delay and per-IP penalty (tests only)"),
      'auth-cache-ttl': str('SECONDS', "Dovecot's auth cache TTL (default 300; 0 = off). The platform flushes it after every change on the data planes under HMC_DATAPLANE_ROOT; render a plane no platform flushes with 0"),
      'agent-port': str('N', "run mail through HMC's transport agent: the port it takes stamped MX mail on (with --reinject-port and --reply-port)"),
      'agent-submission-port': str('N', 'port the transport agent takes submitted mail on (default: --agent-port + 1)'),
      'agent-deliver-port': str('N', 'port the transport agent takes mail for mailboxes with an answering auto-reply on (default: --agent-port + 2)'),
      'agent-host': str('ADDR', 'IPv4 address of the transport agent (default: --listen)'),
      'reinject-port': str('N', 'port of the Postfix listener the agent hands mail back to'),
      'reply-port': str('N', 'port of the Postfix listener the agent sends auto-replies to'),
      ...JSON_OUT,
    },
    kind: 'local',
    run: render,
  },
  {
    words: ['dataplane', 'up'],
    summary: 'start private Postfix and Dovecot instances from a rendered directory (as root)',
    options: { ...DIR_OPTION, ...JSON_OUT },
    kind: 'local',
    run: upCommand,
  },
  {
    words: ['dataplane', 'down'],
    summary: 'stop the instances started from a rendered directory',
    options: { ...DIR_OPTION, ...JSON_OUT },
    kind: 'local',
    run: downCommand,
  },
];

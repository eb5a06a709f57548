import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { OptionSpec } from '../args.js';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { CliError, EXIT_CLIENT, EXIT_OK, EXIT_SERVER, toProblem, UsageError } from '../errors.js';
import { columnsOf, formatRecord, toJson } from '../output.js';
import { parseSize } from '../sizes.js';
import { IMPORT_OPTIONS, runImport } from './import.js';
import { PROTOCOL_NAMES } from './plans.js';
import { choice, DISPLAY_NAME, flag, oneOf, pickFlags, runList, runMutation, runShow, SIZE_HELP, str } from './shared.js';

/** Mailbox kinds and forwarding modes as the API names them. */
export const MAILBOX_KINDS = ['user', 'shared', 'room', 'equipment'] as const;
export const FORWARD_MODES = ['forward_only', 'deliver_and_forward'] as const;
/** Columns the server's mailbox importer reads (header row required). */
export const MAILBOX_CSV_COLUMNS = ['primaryAddress', 'kind', 'displayName', 'planId', 'aliases', 'hidden', 'enabled', 'forwarding', 'login', 'userId'] as const;
/** Columns the server's group importer reads: one row per group; members and managers space-separated. */
export const GROUP_CSV_COLUMNS = ['name', 'address', 'members', 'hidden', 'sendPolicy', 'displayName', 'description', 'managers'] as const;

const SIZE = SIZE_HELP;

const OVERRIDE_OPTIONS: Record<string, OptionSpec> = {
  'issue-warning-quota': str('SIZE', `override the plan: warning size, ${SIZE}`),
  'prohibit-send-quota': str('SIZE', `override the plan: no sending above, ${SIZE}`),
  'prohibit-send-receive-quota': str('SIZE', `override the plan: no sending or receiving above (charged), ${SIZE}`),
  'max-send-size': str('SIZE', `override the plan: largest message sent, ${SIZE}`),
  'max-receive-size': str('SIZE', `override the plan: largest message received, ${SIZE}`),
  'recipient-limit': str('N', 'override the plan: most recipients of one message'),
  'max-messages-per-hour': str('N', 'override the plan: most messages sent in any hour'),
  'max-recipients-per-day': str('N', 'override the plan: most recipients in any 24 hours'),
  protocols: str('LIST', `override the plan: protocols, comma-separated (${PROTOCOL_NAMES.join(',')})`),
};

const FORWARD_OPTIONS: Record<string, OptionSpec> = {
  'forward-to': str('ADDRESS', 'forward mail to this address'),
  'forward-mode': str('MODE', `${FORWARD_MODES.join(' or ')} (default deliver_and_forward: keep a copy)`),
};

/** The per-mailbox overrides given as flags, or undefined when none was. */
export function overridesOf(ctx: Ctx): Record<string, unknown> | undefined {
  const o: Record<string, unknown> = {};
  for (const [flagName, field] of [
    ['issue-warning-quota', 'issueWarningQuota'], ['prohibit-send-quota', 'prohibitSendQuota'], ['prohibit-send-receive-quota', 'prohibitSendReceiveQuota'],
    ['max-send-size', 'maxSendSize'], ['max-receive-size', 'maxReceiveSize'],
  ] as const) {
    const v = ctx.opts.str(flagName);
    if (v !== undefined) o[field] = parseSize(v, `--${flagName}`);
  }
  for (const [flagName, field] of [['recipient-limit', 'recipientLimit'], ['max-messages-per-hour', 'maxMessagesPerHour'], ['max-recipients-per-day', 'maxRecipientsPerDay']] as const) {
    const n = ctx.opts.int(flagName, { min: 1 });
    if (n !== undefined) o[field] = n;
  }
  const protos = ctx.opts.str('protocols');
  if (protos !== undefined) {
    const list = [...new Set(protos.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean))];
    const bad = list.filter((p) => !(PROTOCOL_NAMES as readonly string[]).includes(p));
    if (bad.length > 0) throw new UsageError(`--protocols: unknown ${bad.join(', ')}; known: ${PROTOCOL_NAMES.join(', ')}`);
    o.protocols = list;
  }
  return Object.keys(o).length > 0 ? o : undefined;
}

function forwardingOf(ctx: Ctx): { to: string; mode: string } | undefined {
  const to = ctx.opts.str('forward-to');
  const mode = oneOf(ctx, 'forward-mode', FORWARD_MODES);
  if (to === undefined) {
    if (mode !== undefined) throw new UsageError('--forward-mode needs --forward-to');
    return undefined;
  }
  return { to, mode: mode ?? 'deliver_and_forward' };
}

/** Body of `mailbox create`, exported for its unit test. */
export function createMailboxBody(ctx: Ctx): Record<string, unknown> {
  const kind = oneOf(ctx, 'kind', MAILBOX_KINDS) ?? 'user';
  const user = ctx.opts.str('user');
  const address = ctx.opts.str('address');
  if (kind === 'user' && user === undefined) throw new UsageError('a user mailbox needs --user USER_ID (or give --kind shared|room|equipment)');
  if (kind !== 'user' && user !== undefined) throw new UsageError(`a ${kind} mailbox belongs to no user; leave out --user`);
  if (kind !== 'user' && address === undefined) throw new UsageError(`a ${kind} mailbox needs --address`);
  const aliases = ctx.opts.list('alias');
  const body: Record<string, unknown> = {
    kind, planId: ctx.opts.str('plan'), ...pickFlags(ctx, { user: 'userId', address: 'primaryAddress', 'display-name': 'displayName' }),
  };
  if (aliases.length > 0) body.aliases = aliases;
  const overrides = overridesOf(ctx);
  if (overrides) body.overrides = overrides;
  const hidden = choice(ctx, 'hidden', 'visible');
  if (hidden !== undefined) body.hiddenFromAddressBook = hidden;
  const fwd = forwardingOf(ctx);
  if (fwd) body.forwarding = fwd;
  return body;
}

/** Body of `mailbox update`: only what was given. */
export function updateMailboxBody(ctx: Ctx): Record<string, unknown> {
  const body: Record<string, unknown> = pickFlags(ctx, { 'display-name': 'displayName' });
  const hidden = choice(ctx, 'hidden', 'visible');
  if (hidden !== undefined) body.hiddenFromAddressBook = hidden;
  const enabled = choice(ctx, 'enable', 'disable');
  if (enabled !== undefined) body.enabled = enabled;
  const overrides = overridesOf(ctx);
  if (overrides && ctx.opts.bool('clear-overrides')) throw new UsageError('give either override flags or --clear-overrides, not both');
  if (overrides) body.overrides = overrides;
  if (ctx.opts.bool('clear-overrides')) body.overrides = null;
  const fwd = forwardingOf(ctx);
  if (fwd && ctx.opts.bool('no-forwarding')) throw new UsageError('give either --forward-to or --no-forwarding, not both');
  if (fwd) body.forwarding = fwd;
  if (ctx.opts.bool('no-forwarding')) body.forwarding = null;
  if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give at least one option (see --help)');
  return body;
}

/**
 * `mailbox delete`: sent without waiting, because the request stays running until the purge job runs after
 * the retention period (days); the mailbox is disabled and its addresses quarantined as soon as it answers.
 */
async function deleteMailbox(ctx: Ctx): Promise<number> {
  const res = await ctx.api().delete(path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}`);
  if (ctx.json) {
    ctx.out(toJson(res.body ?? null));
    return EXIT_OK;
  }
  if (res.body && typeof res.body === 'object') ctx.out(formatRecord(res.body, columnsOf('mailbox')));
  const body = res.body as { purgeAfter?: unknown; purgeRequestId?: unknown } | null;
  const purge = body?.purgeAfter;
  const purgeReq = typeof body?.purgeRequestId === 'string' ? ` (scheduled request ${body.purgeRequestId})` : '';
  ctx.out(`deleted mailbox ${arg(ctx, 1)}${res.requestId ? ` (request ${res.requestId})` : ''}; ` +
    `${typeof purge === 'string' ? `purged after ${purge}${purgeReq}, ` : ''}restorable until then with: hmc mailbox restore ${arg(ctx, 0)} ${arg(ctx, 1)}\n`);
  return EXIT_OK;
}

/**
 * `hmc export mailboxes|aliases`: the CSV streamed from the server to the file (or stdout) as it arrives,
 * so an export of 100,000 mailboxes is never held whole in memory.
 */
async function runExport(ctx: Ctx, p: string): Promise<number> {
  const api = ctx.api();
  const token = ctx.opts.str('token') ?? ctx.io.env.HMC_TOKEN ?? '';
  const url = api.url(p);
  let res: Response;
  try {
    res = await ctx.io.fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/csv, application/problem+json' } });
  } catch (e) {
    throw new CliError(`cannot reach the server (GET ${url}): ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`, { exitCode: EXIT_SERVER, cause: e });
  }
  if (!res.ok) {
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: a proxy's page */
    }
    throw CliError.fromProblem(res.status, toProblem(body, res.status, res.statusText), body);
  }
  const file = ctx.opts.str('out');
  const sink = file ? createWriteStream(file) : null;
  const failed = sink ? once(sink, 'error').then(([e]) => { throw new CliError(`cannot write ${file}: ${(e as Error).message}`, { exitCode: EXIT_CLIENT }); }) : null;
  void failed?.catch(() => {}); // awaited through the races below; this only keeps an early error from going unhandled
  const decoder = new TextDecoder();
  let rows = -1; // the header is not a row
  const write = async (s: string) => {
    rows += s.split('\r\n').length - 1;
    if (!sink) return void ctx.io.stdout.write(s);
    if (!sink.write(s)) await Promise.race([once(sink, 'drain'), failed]);
  };
  if (res.body) for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) await write(decoder.decode(chunk, { stream: true }));
  await write(decoder.decode());
  if (sink) {
    sink.end();
    await Promise.race([once(sink, 'finish'), failed]);
    ctx.err(`exported ${Math.max(0, rows)} rows to ${file}\n`);
  }
  return EXIT_OK;
}

const ORG_MBX = ['ORG_ID', 'MAILBOX_ID'];
const OUT: Record<string, OptionSpec> = { out: str('FILE', 'write the CSV to FILE instead of stdout') };

export const mailboxCommands: CommandSpec[] = [
  {
    words: ['mailbox', 'create'],
    summary: 'create a mailbox (user, shared, room or equipment)',
    args: ['ORG_ID'],
    options: {
      plan: { ...str('MAILBOX_PLAN_ID', 'its mailbox plan (one of the organization\'s available plans)'), required: true },
      kind: str('KIND', `${MAILBOX_KINDS.join(', ')} (default user)`),
      user: str('USER_ID', 'the user of a user mailbox (its login is the default address)'),
      address: str('ADDRESS', 'primary address (required for shared, room and equipment)'),
      ...DISPLAY_NAME,
      alias: { type: 'string', value: 'ADDRESS', multiple: true, help: 'another address of the mailbox' },
      hidden: flag('hide from the address book (default: the plan\'s)'),
      visible: flag('show in the address book (default: the plan\'s)'),
      ...FORWARD_OPTIONS,
      ...OVERRIDE_OPTIONS,
    },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, { method: 'POST', path: path`/organizations/${arg(ctx, 0)}/mailboxes`, kind: 'mailbox', done: 'created mailbox', body: createMailboxBody(ctx) }),
  },
  {
    words: ['mailbox', 'list'],
    summary: "list an organization's mailboxes",
    args: ['ORG_ID'],
    options: {
      q: str('PREFIX', 'primary address starts with'),
      kind: str('KIND', MAILBOX_KINDS.join(', ')),
      state: str('STATE', 'active or deleted'),
      user: str('USER_ID', "only this user's"),
    },
    kind: 'list',
    run: (ctx) =>
      runList(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes`, { q: ctx.opts.str('q'), kind: oneOf(ctx, 'kind', MAILBOX_KINDS), state: ctx.opts.str('state'), userId: ctx.opts.str('user') }, 'mailbox'),
  },
  {
    words: ['mailbox', 'show'],
    summary: 'show one mailbox',
    args: ORG_MBX,
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}`, 'mailbox'),
  },
  {
    words: ['mailbox', 'update'],
    summary: 'change a mailbox (override flags replace all its current overrides)',
    args: ORG_MBX,
    options: {
      ...DISPLAY_NAME,
      hidden: flag('hide from the address book'),
      visible: flag('show in the address book'),
      enable: flag('enable the mailbox'),
      disable: flag('disable the mailbox (no login, no mail)'),
      ...FORWARD_OPTIONS,
      'no-forwarding': flag('stop forwarding'),
      ...OVERRIDE_OPTIONS,
      'clear-overrides': flag('drop every override: the plan\'s values apply'),
    },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}`, kind: 'mailbox', done: 'updated mailbox', body: updateMailboxBody(ctx),
      }),
  },
  {
    words: ['mailbox', 'set-plan'],
    summary: "move a mailbox to another of the organization's mailbox plans",
    args: [...ORG_MBX, 'MAILBOX_PLAN_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/plan`, kind: 'mailbox', done: 'changed plan of mailbox', body: { planId: arg(ctx, 2) },
      }),
  },
  {
    words: ['mailbox', 'rename'],
    summary: 'change the primary address, keeping the mailbox and its data',
    args: [...ORG_MBX, 'ADDRESS'],
    options: { 'release-old': flag('quarantine the old address instead of keeping it as an alias') },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/primary-address`, kind: 'mailbox', done: 'renamed mailbox',
        body: { address: arg(ctx, 2), ...(ctx.opts.bool('release-old') ? { keepOldAsAlias: false } : {}) },
      }),
  },
  {
    words: ['mailbox', 'delete'],
    summary: 'delete a mailbox: disabled at once, purged after the retention period, restorable until then',
    args: ORG_MBX,
    kind: 'api',
    run: deleteMailbox,
  },
  {
    words: ['mailbox', 'restore'],
    summary: 'restore a deleted mailbox before it is purged',
    args: ORG_MBX,
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'POST', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/restore`, kind: 'mailbox', done: 'restored mailbox' }),
  },
  {
    words: ['mailbox', 'alias', 'add'],
    summary: 'add an address to a mailbox',
    args: [...ORG_MBX, 'ADDRESS'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/aliases`, kind: 'mailbox', done: `added ${arg(ctx, 2)} to mailbox`,
        body: { address: arg(ctx, 2) },
      }),
  },
  {
    words: ['mailbox', 'alias', 'remove'],
    summary: 'remove an address from a mailbox (it is quarantined: nobody else can take it for a while)',
    args: [...ORG_MBX, 'ADDRESS'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/aliases`, query: { address: arg(ctx, 2) }, kind: 'mailbox',
        done: `removed ${arg(ctx, 2)} from mailbox`,
      }),
  },
  {
    words: ['import', 'mailboxes'],
    summary: `create mailboxes from a CSV file ("-" for stdin); columns: ${MAILBOX_CSV_COLUMNS.join(',')} (what export writes)`,
    args: ['ORG_ID', 'FILE'],
    options: IMPORT_OPTIONS,
    kind: 'api',
    run: (ctx) => runImport(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/import`, 'primaryAddress'),
  },
  {
    words: ['import', 'aliases'],
    summary: 'add aliases from a CSV file ("-" for stdin); columns: mailbox (address or id),alias',
    args: ['ORG_ID', 'FILE'],
    options: IMPORT_OPTIONS,
    kind: 'api',
    run: (ctx) => runImport(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/aliases/import`, 'address'),
  },
  {
    words: ['import', 'groups'],
    summary: `create distribution groups from a CSV file ("-" for stdin), one row per group; columns: ${GROUP_CSV_COLUMNS.join(',')} (what export groups writes, name required)`,
    args: ['ORG_ID', 'FILE'],
    options: IMPORT_OPTIONS,
    kind: 'api',
    run: (ctx) => runImport(ctx, path`/organizations/${arg(ctx, 0)}/groups/import`, 'name'),
  },
  {
    words: ['import', 'group-members'],
    summary: 'add mail members to distribution groups from a CSV file ("-" for stdin); columns: group (address, name or id),member (address or id)',
    args: ['ORG_ID', 'FILE'],
    options: IMPORT_OPTIONS,
    kind: 'api',
    run: (ctx) => runImport(ctx, path`/organizations/${arg(ctx, 0)}/groups/members/import`, 'groupId'),
  },
  {
    words: ['export', 'groups'],
    summary: "write an organization's distribution groups as CSV: name,address,members,hidden,sendPolicy",
    args: ['ORG_ID'],
    options: OUT,
    kind: 'api',
    run: (ctx) => runExport(ctx, path`/organizations/${arg(ctx, 0)}/groups/export`),
  },
  {
    words: ['export', 'mailboxes'],
    summary: "write an organization's mailboxes as CSV (the format import mailboxes reads)",
    args: ['ORG_ID'],
    options: OUT,
    kind: 'api',
    run: (ctx) => runExport(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/export`),
  },
  {
    words: ['export', 'aliases'],
    summary: "write an organization's aliases as CSV, one row per alias (the format import aliases reads)",
    args: ['ORG_ID'],
    options: OUT,
    kind: 'api',
    run: (ctx) => runExport(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/aliases/export`),
  },
];

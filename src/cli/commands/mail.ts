import { readFile } from 'node:fs/promises';
import type { OptionSpec } from '../args.js';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { CliError, EXIT_CLIENT, UsageError } from '../errors.js';
import { parseSize } from '../sizes.js';
import { choice, flag, oneOf, runList, runMutation, runShow, SIZE_HELP, str } from './shared.js';

/**
 * Hosted Email objects other than mailboxes: accepted domains, contacts, public folders, the mail side of
 * groups and auto-replies. Mailboxes, their aliases and CSV import/export are in mailboxes.ts.
 */

export const ACCEPTED_TYPES = ['authoritative', 'internal_relay', 'external_relay'] as const;
export const SEND_POLICIES = ['organization', 'anyone', 'listed'] as const;
export const AUTO_REPLY_MODES = ['off', 'on', 'scheduled'] as const;
export const EXTERNAL_AUDIENCES = ['none', 'known', 'all'] as const;

const SIZE = SIZE_HELP;

function put(body: Record<string, unknown>, values: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(values)) if (v !== undefined) body[k] = v;
  return body;
}

function sizeFlag(ctx: Ctx, name: string): number | undefined {
  const v = ctx.opts.str(name);
  return v === undefined ? undefined : parseSize(v, `--${name}`);
}

const HIDDEN: Record<string, OptionSpec> = { hidden: flag('hide from the address book'), visible: flag('show in the address book') };

// ---- public folders ----

const FOLDER_SIZES: Record<string, OptionSpec> = {
  'issue-warning-quota': str('SIZE', `warning size, at most the post quota (${SIZE}; default: the post quota)`),
  'max-item-size': str('SIZE', `largest item (${SIZE}; default: the post quota)`),
};

function folderFields(ctx: Ctx): Record<string, unknown> {
  return put({}, {
    prohibitPostQuota: sizeFlag(ctx, 'prohibit-post-quota'),
    issueWarningQuota: sizeFlag(ctx, 'issue-warning-quota'),
    maxItemSize: sizeFlag(ctx, 'max-item-size'),
    hiddenFromAddressBook: choice(ctx, 'hidden', 'visible'),
  });
}

// ---- auto-reply ----

/** A message from --X-message TEXT or --X-message-file FILE ("-" = stdin is not offered: both could want it). */
async function message(ctx: Ctx, name: string): Promise<string | undefined> {
  const text = ctx.opts.str(`${name}-message`);
  const file = ctx.opts.str(`${name}-message-file`);
  if (text !== undefined && file !== undefined) throw new UsageError(`give either --${name}-message or --${name}-message-file, not both`);
  if (file === undefined) return text;
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as Error).message}`, { exitCode: EXIT_CLIENT });
  }
}

/** An ISO instant for the API; a date without a zone is refused rather than read in the machine's zone. */
function instant(ctx: Ctx, name: string): string | undefined {
  const v = ctx.opts.str(name);
  if (v === undefined) return undefined;
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(v) || Number.isNaN(Date.parse(v))) {
    throw new UsageError(`--${name} must be an ISO 8601 time with a zone, e.g. 2030-07-01T08:00:00Z, got "${v}"`);
  }
  return new Date(v).toISOString();
}

/** Body of `auto-reply set`: the complete settings (the API replaces them; absent fields take defaults). */
export async function autoReplyBody(ctx: Ctx): Promise<Record<string, unknown>> {
  const mode = oneOf(ctx, 'mode', AUTO_REPLY_MODES)!;
  const startsAt = instant(ctx, 'start');
  const endsAt = instant(ctx, 'end');
  if (mode === 'scheduled' && (!startsAt || !endsAt)) throw new UsageError('--mode scheduled needs --start and --end');
  if (mode !== 'scheduled' && (startsAt || endsAt)) throw new UsageError('--start and --end go with --mode scheduled');
  return put({ mode }, {
    startsAt, endsAt,
    internalMessage: await message(ctx, 'internal'),
    externalMessage: await message(ctx, 'external'),
    externalAudience: oneOf(ctx, 'external-audience', EXTERNAL_AUDIENCES),
  });
}

const ORG_DOM = ['ORG_ID', 'DOMAIN_ID'];

export const mailCommands: CommandSpec[] = [
  // ---- accepted domains ----
  {
    words: ['accepted-domain', 'set'],
    summary: "accept mail for one of the organization's domains, or change how (type, alias of another domain)",
    args: ORG_DOM,
    options: {
      type: str('TYPE', `${ACCEPTED_TYPES.join(', ')} (new: authoritative)`),
      'alias-of': str('DOMAIN_ID', 'mail to x@this domain reaches x@that (accepted, non-alias) domain'),
      'no-alias': flag('stop being an alias domain'),
    },
    kind: 'api',
    run: (ctx) => {
      if (ctx.opts.str('alias-of') !== undefined && ctx.opts.bool('no-alias')) throw new UsageError('give either --alias-of or --no-alias, not both');
      const body = put({}, {
        type: oneOf(ctx, 'type', ACCEPTED_TYPES),
        aliasOf: ctx.opts.bool('no-alias') ? null : ctx.opts.str('alias-of'),
      });
      return runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/domains/${arg(ctx, 1)}/accepted`, kind: 'acceptedDomain', done: 'accepted domain', id: arg(ctx, 1), body,
      });
    },
  },
  {
    words: ['accepted-domain', 'remove'],
    summary: 'stop accepting mail for a domain (no address may use it)',
    args: ORG_DOM,
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, { method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/domains/${arg(ctx, 1)}/accepted`, done: 'removed accepted domain', id: arg(ctx, 1) }),
  },
  {
    words: ['accepted-domain', 'list'],
    summary: "list an organization's accepted domains",
    args: ['ORG_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/accepted-domains`, {}, 'acceptedDomain'),
  },

  // ---- contacts ----
  {
    words: ['contact', 'create'],
    summary: "add an external address to the organization's address book",
    args: ['ORG_ID', 'ADDRESS'],
    options: { 'display-name': { ...str('X', 'display name'), required: true }, hidden: flag('hide from the address book') },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/contacts`, kind: 'contact', done: 'created contact',
        body: put({ externalAddress: arg(ctx, 1), displayName: ctx.opts.str('display-name') }, { hiddenFromAddressBook: ctx.opts.bool('hidden') || undefined }),
      }),
  },
  {
    words: ['contact', 'list'],
    summary: "list an organization's contacts",
    args: ['ORG_ID'],
    options: { q: str('PREFIX', 'external address starts with') },
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/contacts`, { q: ctx.opts.str('q') }, 'contact'),
  },
  {
    words: ['contact', 'delete'],
    summary: 'delete a contact',
    args: ['ORG_ID', 'CONTACT_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/contacts/${arg(ctx, 1)}`, done: 'deleted contact', id: arg(ctx, 1) }),
  },

  // ---- public folders ----
  {
    words: ['public-folder', 'create'],
    summary: 'create a public folder (its post quota is charged to the organization\'s public-folder pool)',
    args: ['ORG_ID', 'NAME'],
    options: {
      'prohibit-post-quota': { ...str('SIZE', `posting is refused above this size, ${SIZE}`), required: true },
      ...FOLDER_SIZES,
      parent: str('FOLDER_ID', 'create it inside this folder'),
      ...HIDDEN,
    },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/public-folders`, kind: 'publicFolder', done: 'created public folder',
        body: put({ name: arg(ctx, 1), ...folderFields(ctx) }, { parentId: ctx.opts.str('parent') }),
      }),
  },
  {
    words: ['public-folder', 'list'],
    summary: "list an organization's public folders",
    args: ['ORG_ID'],
    options: { parent: str('FOLDER_ID', 'only the subfolders of this folder'), root: flag('only top-level folders'), q: str('PATH', 'path starts with, e.g. /Sales') },
    kind: 'list',
    run: (ctx) =>
      runList(ctx, path`/organizations/${arg(ctx, 0)}/public-folders`, { parentId: ctx.opts.str('parent'), root: ctx.opts.bool('root') || undefined, q: ctx.opts.str('q') }, 'publicFolder'),
  },
  {
    words: ['public-folder', 'show'],
    summary: 'show one public folder',
    args: ['ORG_ID', 'FOLDER_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/public-folders/${arg(ctx, 1)}`, 'publicFolder'),
  },
  {
    words: ['public-folder', 'update'],
    summary: 'rename or resize a public folder (a resize re-charges the difference)',
    args: ['ORG_ID', 'FOLDER_ID'],
    options: { name: str('NAME', 'new name'), 'prohibit-post-quota': str('SIZE', `posting is refused above this size, ${SIZE}`), ...FOLDER_SIZES, ...HIDDEN },
    kind: 'api',
    run: (ctx) => {
      const body = put(folderFields(ctx), { name: ctx.opts.str('name') });
      if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give at least one option (see --help)');
      return runMutation(ctx, { method: 'PATCH', path: path`/organizations/${arg(ctx, 0)}/public-folders/${arg(ctx, 1)}`, kind: 'publicFolder', done: 'updated public folder', body });
    },
  },
  {
    words: ['public-folder', 'delete'],
    summary: 'delete a public folder (refused while it has subfolders, unless --recursive)',
    args: ['ORG_ID', 'FOLDER_ID'],
    options: { recursive: flag('also delete every subfolder') },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/public-folders/${arg(ctx, 1)}`, done: 'deleted public folder', id: arg(ctx, 1),
        query: { recursive: ctx.opts.bool('recursive') || undefined },
      }),
  },

  // ---- the mail side of groups ----
  {
    words: ['group', 'mail', 'enable'],
    summary: 'make a group a distribution group with an address (or change its address and settings)',
    args: ['ORG_ID', 'GROUP_ID', 'ADDRESS'],
    options: { ...HIDDEN, 'send-policy': str('POLICY', `who may send to it: ${SEND_POLICIES.join(', ')} (default organization)`) },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}/mail`, kind: 'mailGroup', done: 'mail-enabled group', id: arg(ctx, 1),
        body: put({ primaryAddress: arg(ctx, 2) }, { hiddenFromAddressBook: choice(ctx, 'hidden', 'visible'), sendPolicy: oneOf(ctx, 'send-policy', SEND_POLICIES) }),
      }),
  },
  {
    words: ['group', 'mail', 'disable'],
    summary: "stop a group's mail: its address is quarantined, its mail members and grants removed",
    args: ['ORG_ID', 'GROUP_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, { method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/groups/${arg(ctx, 1)}/mail`, done: 'mail-disabled group', id: arg(ctx, 1) }),
  },

  // ---- auto-reply ----
  {
    words: ['auto-reply', 'show'],
    summary: "show a mailbox's automatic reply",
    args: ['ORG_ID', 'MAILBOX_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/auto-reply`, 'autoReply'),
  },
  {
    words: ['auto-reply', 'set'],
    summary: "set a mailbox's automatic reply (replaces all of it: unset messages become empty)",
    args: ['ORG_ID', 'MAILBOX_ID'],
    options: {
      mode: { ...str('MODE', AUTO_REPLY_MODES.join(', ')), required: true },
      start: str('TIME', 'with --mode scheduled: ISO time with a zone'),
      end: str('TIME', 'with --mode scheduled: ISO time with a zone'),
      'internal-message': str('TEXT', 'reply to senders of the organization'),
      'internal-message-file': str('FILE', 'the internal reply, read from FILE'),
      'external-message': str('TEXT', 'reply to senders outside the organization'),
      'external-message-file': str('FILE', 'the external reply, read from FILE'),
      'external-audience': str('WHO', `${EXTERNAL_AUDIENCES.join(', ')} (default none)`),
    },
    kind: 'api',
    run: async (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/auto-reply`, kind: 'autoReply', done: 'set auto-reply of mailbox', id: arg(ctx, 1),
        body: await autoReplyBody(ctx),
      }),
  },
];

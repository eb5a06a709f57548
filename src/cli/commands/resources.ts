import type { OptionSpec } from '../args.js';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { UsageError } from '../errors.js';
import { parseSize } from '../sizes.js';
import { oneOf, pickFlags, runList, runMutation, runShow, SIZE_HELP, str, assign, nonEmpty } from './shared.js';
import { columnsOf, formatRecord, formatTable, toJson } from '../output.js';

/**
 * The Resource Manager registry (provider admins only; to anyone else the API answers 404): mail servers and
 * their mailstores. Endpoints and paths are checked by the server, which stores them in canonical form.
 */

/** States, purposes and sharing modes as the API names them (src/resources/model.ts checks them too). */
export const RESOURCE_STATES = ['active', 'draining', 'offline'] as const;
export const STORE_PURPOSES = ['mailbox', 'public_folder'] as const;
export const STORE_SHARING = ['shared', 'dedicated'] as const;

/** An optional value where `none` means the API's null (no POP3, no mailbox limit). */
function orNone(ctx: Ctx, name: string): string | null | undefined {
  const v = ctx.opts.str(name);
  return v !== undefined && /^(none|unlimited)$/i.test(v.trim()) ? null : v;
}

const STATE = { state: str('STATE', `${RESOURCE_STATES.join(', ')} (draining: keeps what it has, takes nothing new)`) };

const SERVER_OPTIONS: Record<string, OptionSpec> = {
  lmtp: str('ENDPOINT', 'LMTP delivery endpoint: host:port, inet:host:port or unix:/path'),
  imap: str('ENDPOINT', 'IMAP endpoint, host:port'),
  pop: str('ENDPOINT', 'POP3 endpoint, host:port ("none" = no POP3)'),
  'mail-root': str('PATH', 'absolute path under which the server keeps its mailstores'),
  ...STATE,
};

/** The server fields given on the command line (create and update share them). */
function serverFields(ctx: Ctx): Record<string, unknown> {
  return assign(pickFlags(ctx, { name: 'name', lmtp: 'lmtpEndpoint', imap: 'imapEndpoint', 'mail-root': 'mailRoot' }), {
    popEndpoint: orNone(ctx, 'pop'),
    state: oneOf(ctx, 'state', RESOURCE_STATES),
  });
}

const STORE_OPTIONS: Record<string, OptionSpec> = {
  capacity: str('SIZE', `what the store may hold (allocations never exceed it), ${SIZE_HELP}`),
  purpose: str('P', STORE_PURPOSES.join(' or ')),
  sharing: str('S', 'shared (many organizations) or dedicated (one at a time)'),
  'max-mailboxes': str('N', 'most mailboxes or public folders on the store ("unlimited" = no limit)'),
  ...STATE,
};

/** The store fields given on the command line. */
function storeFields(ctx: Ctx): Record<string, unknown> {
  const capacity = ctx.opts.str('capacity');
  const max = orNone(ctx, 'max-mailboxes');
  return assign(pickFlags(ctx, { name: 'name' }), {
    purpose: oneOf(ctx, 'purpose', STORE_PURPOSES),
    sharing: oneOf(ctx, 'sharing', STORE_SHARING),
    capacityBytes: capacity === undefined ? undefined : parseSize(capacity, '--capacity'),
    maxMailboxes: max === undefined || max === null ? max : ctx.opts.int('max-mailboxes', { min: 0 }),
    state: oneOf(ctx, 'state', RESOURCE_STATES),
  });
}

const required = (o: OptionSpec): OptionSpec => ({ ...o, required: true });
const RENAME = { name: str('NAME', 'new name') };
const SERVER_STORE = ['SERVER_ID', 'STORE_ID'];

export const resourceCommands: CommandSpec[] = [
  {
    words: ['server', 'create'],
    summary: 'register a mail server (provider admins)',
    args: ['NAME'],
    options: { ...SERVER_OPTIONS, lmtp: required(SERVER_OPTIONS.lmtp!), imap: required(SERVER_OPTIONS.imap!), 'mail-root': required(SERVER_OPTIONS['mail-root']!) },
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'POST', path: '/mail-servers', kind: 'mailServer', done: 'created mail server', body: { ...serverFields(ctx), name: arg(ctx, 0) } }),
  },
  {
    words: ['server', 'list'],
    summary: 'list mail servers',
    kind: 'list',
    run: (ctx) => runList(ctx, '/mail-servers', {}, 'mailServer'),
  },
  {
    words: ['server', 'show'],
    summary: 'show one mail server',
    args: ['SERVER_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/mail-servers/${arg(ctx, 0)}`, 'mailServer'),
  },
  {
    words: ['server', 'update'],
    summary: 'change a mail server (endpoints, mail root, state, name)',
    args: ['SERVER_ID'],
    options: { ...RENAME, ...SERVER_OPTIONS },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, { method: 'PATCH', path: path`/mail-servers/${arg(ctx, 0)}`, kind: 'mailServer', done: 'updated mail server', body: nonEmpty(serverFields(ctx)) }),
  },
  {
    words: ['server', 'delete'],
    summary: 'remove a mail server (it may have no mailstores)',
    args: ['SERVER_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/mail-servers/${arg(ctx, 0)}`, done: 'deleted mail server', id: arg(ctx, 0) }),
  },
  {
    words: ['store', 'create'],
    summary: 'create a mailstore on a mail server',
    args: ['SERVER_ID', 'NAME'],
    options: { ...STORE_OPTIONS, capacity: required(STORE_OPTIONS.capacity!) },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: path`/mail-servers/${arg(ctx, 0)}/stores`, kind: 'mailstore', done: 'created mailstore', body: { ...storeFields(ctx), name: arg(ctx, 1) },
      }),
  },
  {
    words: ['store', 'list'],
    summary: 'list mailstores with capacity, allocated and free bytes',
    options: { server: str('ID', 'only stores of this server'), purpose: str('P', STORE_PURPOSES.join(' or ')), state: str('STATE', RESOURCE_STATES.join(', ')) },
    kind: 'list',
    run: (ctx) =>
      runList(ctx, '/mailstores', { server: ctx.opts.str('server'), purpose: oneOf(ctx, 'purpose', STORE_PURPOSES), state: oneOf(ctx, 'state', RESOURCE_STATES) }, 'mailstore'),
  },
  {
    words: ['store', 'show'],
    summary: 'show one mailstore',
    args: SERVER_STORE,
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/mail-servers/${arg(ctx, 0)}/stores/${arg(ctx, 1)}`, 'mailstore'),
  },
  {
    words: ['store', 'update'],
    summary: 'change a mailstore (capacity not below what is allocated; purpose and sharing only while unused)',
    args: SERVER_STORE,
    options: { ...RENAME, ...STORE_OPTIONS },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/mail-servers/${arg(ctx, 0)}/stores/${arg(ctx, 1)}`, kind: 'mailstore', done: 'updated mailstore', body: nonEmpty(storeFields(ctx)),
      }),
  },
  {
    words: ['store', 'delete'],
    summary: 'remove a mailstore (no organization may hold an allocation on it)',
    args: SERVER_STORE,
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/mail-servers/${arg(ctx, 0)}/stores/${arg(ctx, 1)}`, done: 'deleted mailstore', id: arg(ctx, 1) }),
  },
  {
    words: ['store', 'consumers'],
    summary: 'the organizations holding allocation on a mailstore',
    args: ['STORE_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/mailstores/${arg(ctx, 0)}/consumers`, {}, 'consumer'),
  },
  {
    words: ['store', 'recipients'],
    summary: 'the mailboxes (or public folders) placed on a mailstore',
    args: ['STORE_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/mailstores/${arg(ctx, 0)}/recipients`, {}, 'recipient'),
  },
  {
    words: ['org', 'resources'],
    summary: "an organization's allocation and its pieces on each store",
    args: ['ORG_ID'],
    kind: 'api',
    run: async (ctx) => {
      const res = await ctx.api().get(path`/organizations/${arg(ctx, 0)}/resources`);
      const body = res.body as { stores: Record<string, unknown>[] };
      ctx.out(ctx.json ? toJson(body) : `${formatRecord({ ...body, stores: body.stores.length }, columnsOf('resources'))}${formatTable(body.stores, columnsOf('storePiece'))}`);
      return 0;
    },
  },
  {
    words: ['org', 'allocate'],
    summary: "size an organization's mailbox allocation (a total); --source STORE_ID=SIZE says which stores gain or give up bytes",
    args: ['ORG_ID', 'SIZE'],
    options: { source: { ...str('STORE_ID=SIZE', `a store and the bytes it gains (growing) or gives up (shrinking), ${SIZE_HELP}; needed to shrink across stores`), multiple: true } },
    kind: 'api',
    run: (ctx) => {
      const sources = ctx.opts.list('source').map((s) => {
        const i = s.indexOf('=');
        if (i <= 0) throw new UsageError(`--source ${s}: expected STORE_ID=SIZE`);
        return { storeId: s.slice(0, i), bytes: parseSize(s.slice(i + 1), '--source') };
      });
      return runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/allocation`, kind: 'resources', done: 'allocated organization', id: arg(ctx, 0),
        body: { mailboxBytes: parseSize(arg(ctx, 1), 'SIZE'), ...(sources.length > 0 ? { sources } : {}) },
      });
    },
  },
  {
    words: ['mailbox', 'move'],
    summary: 'move a mailbox to another mailstore (its data is copied by a provider job; waits for it)',
    args: ['ORG_ID', 'MAILBOX_ID', 'STORE_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, {
      method: 'POST', path: path`/organizations/${arg(ctx, 0)}/mailboxes/${arg(ctx, 1)}/move`, kind: 'move', done: 'moved mailbox', id: arg(ctx, 1), body: { storeId: arg(ctx, 2) },
    }),
  },
  {
    words: ['org', 'move-mailboxes'],
    summary: "move all of an organization's mailboxes to one mailstore (a batch request; see hmc request show)",
    args: ['ORG_ID', 'STORE_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, {
      method: 'POST', path: path`/organizations/${arg(ctx, 0)}/move-mailboxes`, kind: 'orgMove', done: 'moving mailboxes of organization', id: arg(ctx, 0), body: { storeId: arg(ctx, 1) },
    }),
  },
];

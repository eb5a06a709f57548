import type { OptionSpec } from '../args.js';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path, type ApiClient, type SendOptions } from '../client.js';
import { UsageError } from '../errors.js';
import { parseLimitSize, parseSize } from '../sizes.js';
import { choice, DISPLAY_NAME, flag, pickFlags, runList, runMutation, runShow, SIZE_HELP, str, assign, nonEmpty } from './shared.js';

/** Protocols a plan can allow (the API's names; the server checks them too). */
export const PROTOCOL_NAMES = ['imap', 'pop3', 'submission', 'webmail', 'dav', 'mobile'] as const;
/** Organization-plan features that are on/off switches. */
export const FEATURE_NAMES = ['publicFolders', 'mobility', 'unifiedMessaging', 'collaboration'] as const;


/** `--protocols imap,pop3`: a comma list of known protocols ("" = none). */
function protocols(ctx: Ctx): string[] | undefined {
  const v = ctx.opts.str('protocols');
  if (v === undefined) return undefined;
  const list = v.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const bad = list.filter((p) => !(PROTOCOL_NAMES as readonly string[]).includes(p));
  if (bad.length > 0) throw new UsageError(`--protocols: unknown ${bad.join(', ')}; known: ${PROTOCOL_NAMES.join(', ')}`);
  return [...new Set(list)];
}

/** A count limit: an integer or `unlimited` (null). */
function limit(ctx: Ctx, name: string): number | null | undefined {
  const v = ctx.opts.str(name);
  if (v === undefined) return undefined;
  if (/^(unlimited|none)$/i.test(v.trim())) return null;
  return ctx.opts.int(name, { min: 0 });
}

const ORG_PLAN_OPTIONS: Record<string, OptionSpec> = {
  ...DISPLAY_NAME,
  'max-mailboxes': str('N', 'most mailboxes ("unlimited" = no limit)'),
  'max-domains': str('N', 'most accepted domains ("unlimited" = no limit)'),
  'max-groups': str('N', 'most mail-enabled groups ("unlimited" = no limit)'),
  'max-contacts': str('N', 'most contacts ("unlimited" = no limit)'),
  'max-public-folders': str('N', 'most public folders ("unlimited" = no limit)'),
  storage: str('SIZE', `mailbox storage of each organization on the plan, ${SIZE_HELP} ("unlimited" only with --dynamic-storage)`),
  'dynamic-storage': flag('the allocation grows on demand'),
  'fixed-storage': flag('the allocation does not grow (the default)'),
  'max-mailbox-size': str('SIZE', `largest mailbox (prohibitSendReceiveQuota), ${SIZE_HELP} ("unlimited" = no limit)`),
  mailstore: str('KIND', 'shared or dedicated'),
  placement: str('ALG', 'tightPack, level or minStoreCount'),
  'public-folder-storage': str('SIZE', `public-folder pool of each organization, ${SIZE_HELP}`),
  feature: { type: 'string', value: 'NAME', multiple: true, help: `turn a feature on: ${FEATURE_NAMES.join(', ')}` },
  'no-feature': { type: 'string', value: 'NAME', multiple: true, help: 'turn a feature off' },
  protocols: str('LIST', `protocols allowed, comma-separated: ${PROTOCOL_NAMES.join(',')}`),
  'max-messages-per-hour': str('N', 'most messages the whole organization sends in any hour (default 10000)'),
  'max-recipients-per-day': str('N', 'most recipients of the organization\'s messages in any 24 hours (default 50000)'),
};

/** The organization-plan fields given on the command line (create and update share them). */
export function orgPlanFields(ctx: Ctx): Record<string, unknown> {
  const body: Record<string, unknown> = pickFlags(ctx, { 'display-name': 'displayName', mailstore: 'mailstoreKind', placement: 'placement' });
  const storage = ctx.opts.str('storage');
  const maxMailbox = ctx.opts.str('max-mailbox-size');
  const pool = ctx.opts.str('public-folder-storage');
  assign(body, {
    maxMailboxes: limit(ctx, 'max-mailboxes'),
    maxDomains: limit(ctx, 'max-domains'),
    maxGroups: limit(ctx, 'max-groups'),
    maxContacts: limit(ctx, 'max-contacts'),
    maxPublicFolders: limit(ctx, 'max-public-folders'),
    storageBytes: storage === undefined ? undefined : parseLimitSize(storage, '--storage'),
    dynamicStorage: choice(ctx, 'dynamic-storage', 'fixed-storage'),
    maxMailboxBytes: maxMailbox === undefined ? undefined : parseLimitSize(maxMailbox, '--max-mailbox-size'),
    publicFolderBytes: pool === undefined ? undefined : parseSize(pool, '--public-folder-storage'),
    maxMessagesPerHour: ctx.opts.int('max-messages-per-hour', { min: 1 }),
    maxRecipientsPerDay: ctx.opts.int('max-recipients-per-day', { min: 1 }),
  });
  const features: Record<string, unknown> = {};
  const on = ctx.opts.list('feature');
  const off = ctx.opts.list('no-feature');
  for (const [names, value] of [[on, true], [off, false]] as const) {
    for (const n of names) {
      if (!(FEATURE_NAMES as readonly string[]).includes(n)) throw new UsageError(`unknown feature "${n}"; known: ${FEATURE_NAMES.join(', ')}`);
      if (n in features && features[n] !== value) throw new UsageError(`feature ${n} is both on and off`);
      features[n] = value;
    }
  }
  const protos = protocols(ctx);
  if (protos) features.protocols = protos;
  if (Object.keys(features).length > 0) body.features = features;
  return body;
}

const MAILBOX_PLAN_OPTIONS: Record<string, OptionSpec> = {
  ...DISPLAY_NAME,
  'issue-warning-quota': str('SIZE', `warn the user above this size, ${SIZE_HELP}`),
  'prohibit-send-quota': str('SIZE', `no sending above this size, ${SIZE_HELP}`),
  'prohibit-send-receive-quota': str('SIZE', `no sending or receiving above this size (what the organization is charged), ${SIZE_HELP}`),
  'max-send-size': str('SIZE', `largest message sent, ${SIZE_HELP}`),
  'max-receive-size': str('SIZE', `largest message received, ${SIZE_HELP}`),
  'recipient-limit': str('N', 'most recipients of one message'),
  'max-messages-per-hour': str('N', 'most messages a mailbox sends in any hour (default 500)'),
  'max-recipients-per-day': str('N', 'most recipients of a mailbox\'s messages in any 24 hours (default 2000)'),
  protocols: str('LIST', `protocols allowed, comma-separated: ${PROTOCOL_NAMES.join(',')}`),
  hidden: flag('new mailboxes are hidden from the address book by default'),
  visible: flag('new mailboxes are shown in the address book by default'),
  'external-forwarding': flag('mailboxes may forward outside the platform'),
  'no-external-forwarding': flag('mailboxes may not forward outside the platform'),
};

const QUOTA_FLAGS = {
  'issue-warning-quota': 'issueWarningQuota',
  'prohibit-send-quota': 'prohibitSendQuota',
  'prohibit-send-receive-quota': 'prohibitSendReceiveQuota',
  'max-send-size': 'maxSendSize',
  'max-receive-size': 'maxReceiveSize',
} as const;

/** The mailbox-plan fields given on the command line. */
export function mailboxPlanFields(ctx: Ctx): Record<string, unknown> {
  const body: Record<string, unknown> = pickFlags(ctx, { 'display-name': 'displayName' });
  for (const [flagName, field] of Object.entries(QUOTA_FLAGS)) {
    const v = ctx.opts.str(flagName);
    if (v !== undefined) body[field] = parseSize(v, `--${flagName}`);
  }
  return assign(body, {
    recipientLimit: ctx.opts.int('recipient-limit', { min: 1 }),
    maxMessagesPerHour: ctx.opts.int('max-messages-per-hour', { min: 1 }),
    maxRecipientsPerDay: ctx.opts.int('max-recipients-per-day', { min: 1 }),
    protocols: protocols(ctx),
    hiddenFromAddressBook: choice(ctx, 'hidden', 'visible'),
    externalForwarding: choice(ctx, 'external-forwarding', 'no-external-forwarding'),
  });
}

/**
 * `plan mailbox update`: like any update, plus where to follow the re-apply batch the edit started. The
 * shared runMutation prints the answer itself, so the client is wrapped to read the answer's
 * `reapplyRequestId` as it passes (the PATCH only, not the polls).
 */
async function updateMailboxPlan(ctx: Ctx): Promise<number> {
  const body = nonEmpty(mailboxPlanFields(ctx));
  const api = ctx.api();
  let reapply: string | null = null;
  const watching: ApiClient = Object.create(api);
  watching.send = async <T>(method: string, p: string, opts?: SendOptions) => {
    const res = await api.send<T>(method, p, opts);
    if (method === 'PATCH') {
      const id = (res.body as { reapplyRequestId?: unknown } | null)?.reapplyRequestId;
      if (typeof id === 'string') reapply = id;
    }
    return res;
  };
  const code = await runMutation({ ...ctx, api: () => watching }, {
    method: 'PATCH', path: path`/plans/mailbox/${arg(ctx, 0)}`, kind: 'mailboxPlan', done: 'updated mailbox plan', body,
  });
  // on stderr with --json, so stdout stays the one JSON answer (which carries the id as well)
  if (code === 0 && reapply) (ctx.json ? ctx.err : ctx.out)(`re-applying to its mailboxes: request ${reapply} (follow with: hmc request show ${reapply})\n`);
  return code;
}

const OWNER: Record<string, OptionSpec> = { owner: str('OWNER', '"provider" or a reseller id: only plans it owns') };
const RESELLER: Record<string, OptionSpec> = { reseller: str('ID', 'reseller that owns the plan (provider admins; reseller admins always create their own)') };

export const planCommands: CommandSpec[] = [
  {
    words: ['plan', 'org', 'create'],
    summary: 'create an organization plan (limits, storage, features)',
    args: ['NAME'],
    options: { ...RESELLER, ...ORG_PLAN_OPTIONS },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: '/plans/organization', kind: 'orgPlan', done: 'created organization plan',
        body: { name: arg(ctx, 0), ...pickFlags(ctx, { reseller: 'resellerId' }), ...orgPlanFields(ctx) },
      }),
  },
  {
    words: ['plan', 'org', 'list'],
    summary: 'list organization plans',
    options: OWNER,
    kind: 'list',
    run: (ctx) => runList(ctx, '/plans/organization', { owner: ctx.opts.str('owner') }, 'orgPlan'),
  },
  {
    words: ['plan', 'org', 'show'],
    summary: 'show one organization plan',
    args: ['PLAN_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/plans/organization/${arg(ctx, 0)}`, 'orgPlan'),
  },
  {
    words: ['plan', 'org', 'update'],
    summary: 'change an organization plan (its organizations get the new limits at once)',
    args: ['PLAN_ID'],
    options: ORG_PLAN_OPTIONS,
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/plans/organization/${arg(ctx, 0)}`, kind: 'orgPlan', done: 'updated organization plan', body: nonEmpty(orgPlanFields(ctx)),
      }),
  },
  {
    words: ['plan', 'org', 'delete'],
    summary: 'delete an organization plan (no organization may be on it)',
    args: ['PLAN_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/plans/organization/${arg(ctx, 0)}`, done: 'deleted organization plan', id: arg(ctx, 0) }),
  },
  {
    words: ['plan', 'mailbox', 'create'],
    summary: 'create a mailbox plan (quotas, message sizes, protocols)',
    args: ['NAME'],
    options: {
      ...RESELLER,
      ...MAILBOX_PLAN_OPTIONS,
      'issue-warning-quota': { ...MAILBOX_PLAN_OPTIONS['issue-warning-quota']!, required: true },
      'prohibit-send-quota': { ...MAILBOX_PLAN_OPTIONS['prohibit-send-quota']!, required: true },
      'prohibit-send-receive-quota': { ...MAILBOX_PLAN_OPTIONS['prohibit-send-receive-quota']!, required: true },
    },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'POST', path: '/plans/mailbox', kind: 'mailboxPlan', done: 'created mailbox plan',
        body: { name: arg(ctx, 0), ...pickFlags(ctx, { reseller: 'resellerId' }), ...mailboxPlanFields(ctx) },
      }),
  },
  {
    words: ['plan', 'mailbox', 'list'],
    summary: 'list mailbox plans',
    options: OWNER,
    kind: 'list',
    run: (ctx) => runList(ctx, '/plans/mailbox', { owner: ctx.opts.str('owner') }, 'mailboxPlan'),
  },
  {
    words: ['plan', 'mailbox', 'show'],
    summary: 'show one mailbox plan',
    args: ['PLAN_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/plans/mailbox/${arg(ctx, 0)}`, 'mailboxPlan'),
  },
  {
    words: ['plan', 'mailbox', 'update'],
    summary: 'change a mailbox plan; its mailboxes are re-applied by a batch request (printed)',
    args: ['PLAN_ID'],
    options: MAILBOX_PLAN_OPTIONS,
    kind: 'api',
    run: updateMailboxPlan,
  },
  {
    words: ['plan', 'mailbox', 'delete'],
    summary: 'delete a mailbox plan (no mailbox may be on it)',
    args: ['PLAN_ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/plans/mailbox/${arg(ctx, 0)}`, done: 'deleted mailbox plan', id: arg(ctx, 0) }),
  },
  {
    words: ['reseller', 'set-plan'],
    summary: "set a reseller's own plan: the ceiling of the plans it defines (provider admins)",
    args: ['RESELLER_ID', 'ORG_PLAN_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/resellers/${arg(ctx, 0)}/plan`, kind: 'resellerPlan', done: `set plan ${arg(ctx, 1)} of reseller`, id: arg(ctx, 0),
        body: { orgPlanId: arg(ctx, 1) },
      }),
  },
  {
    words: ['reseller', 'plan'],
    summary: "show a reseller's own plan",
    args: ['RESELLER_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/resellers/${arg(ctx, 0)}/plan`, 'resellerPlan'),
  },
  {
    words: ['org', 'subscribe'],
    summary: "subscribe an organization to an organization plan, or change its plan",
    args: ['ORG_ID', 'ORG_PLAN_ID'],
    options: { storage: str('SIZE', `this organization's mailbox storage instead of the plan's, ${SIZE_HELP} ("plan" = the plan's)`) },
    kind: 'api',
    run: (ctx) => {
      const storage = ctx.opts.str('storage');
      const storageBytes = storage === undefined ? undefined : storage.trim().toLowerCase() === 'plan' ? null : parseSize(storage, '--storage');
      return runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/subscription`, kind: 'subscription', done: 'subscribed organization', id: arg(ctx, 0),
        body: assign({ orgPlanId: arg(ctx, 1) }, { storageBytes }),
      });
    },
  },
  {
    words: ['org', 'subscription'],
    summary: "show an organization's plan, allocation and usage",
    args: ['ORG_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/subscription`, 'subscription'),
  },
  {
    words: ['org', 'plans', 'list'],
    summary: 'list the mailbox plans an organization may use',
    args: ['ORG_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/available-plans`, {}, 'availablePlan'),
  },
  {
    words: ['org', 'plans', 'add'],
    summary: 'let an organization use a mailbox plan',
    args: ['ORG_ID', 'MAILBOX_PLAN_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PUT', path: path`/organizations/${arg(ctx, 0)}/available-plans/${arg(ctx, 1)}`, done: `made plan ${arg(ctx, 1)} available to organization`, id: arg(ctx, 0),
      }),
  },
  {
    words: ['org', 'plans', 'remove'],
    summary: 'stop offering a mailbox plan to an organization (its mailboxes keep it)',
    args: ['ORG_ID', 'MAILBOX_PLAN_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/available-plans/${arg(ctx, 1)}`, done: `removed plan ${arg(ctx, 1)} from organization`, id: arg(ctx, 0),
      }),
  },
];

import type { OptionSpec } from '../args.js';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { UsageError } from '../errors.js';
import { readSecret } from '../io.js';
import { DISPLAY_NAME, pickFlags, runList, runMutation, runShow } from './shared.js';

/** Roles a user of an organization can hold (higher roles belong to API tokens, not mailbox users). */
export const USER_ROLES = ['user', 'organization_helpdesk', 'organization_admin'] as const;

const PROFILE: Record<string, OptionSpec> = {
  ...DISPLAY_NAME,
  'given-name': { type: 'string', value: 'X', help: 'given name' },
  surname: { type: 'string', value: 'X', help: 'surname' },
  role: { type: 'string', value: 'ROLE', help: `one of ${USER_ROLES.join(', ')}` },
};

const PROFILE_FIELDS = { 'display-name': 'displayName', 'given-name': 'givenName', surname: 'surname', role: 'role' };

function checkRole(ctx: Ctx): void {
  const role = ctx.opts.str('role');
  if (role !== undefined && !(USER_ROLES as readonly string[]).includes(role)) {
    throw new UsageError(`--role must be one of ${USER_ROLES.join(', ')}, got "${role}"`);
  }
}

/** The password for a new user: from stdin, never from argv (visible to everyone in `ps` and kept in shell history). */
async function passwordFields(ctx: Ctx): Promise<{ password?: string; passwordHash?: string }> {
  const hash = ctx.opts.str('password-hash');
  const fromStdin = ctx.opts.bool('password-stdin');
  if (hash !== undefined && fromStdin) throw new UsageError('give either --password-stdin or --password-hash, not both');
  if (hash !== undefined) return { passwordHash: hash };
  if (!fromStdin) return {};
  const password = await readSecret(ctx.io, 'Password: ');
  if (password === '') throw new UsageError('the password read from stdin is empty');
  return { password };
}

/** Body of `user create`, exported for its unit test. */
export async function createUserBody(ctx: Ctx): Promise<Record<string, unknown>> {
  checkRole(ctx);
  return {
    login: arg(ctx, 1),
    ...pickFlags(ctx, PROFILE_FIELDS),
    ...(await passwordFields(ctx)),
    ...(ctx.opts.bool('disabled') ? { enabled: false } : {}),
  };
}

/** Body of `user update`: only what was given, so an update never blanks a field by accident. */
export function updateUserBody(ctx: Ctx): Record<string, unknown> {
  checkRole(ctx);
  if (ctx.opts.bool('enable') && ctx.opts.bool('disable')) throw new UsageError('give either --enable or --disable, not both');
  const body: Record<string, unknown> = { ...pickFlags(ctx, PROFILE_FIELDS) };
  // an empty --given-name/--surname clears it (the API takes null); a display name cannot be cleared
  for (const f of ['givenName', 'surname']) if (body[f] === '') body[f] = null;
  Object.assign(body, {
    ...(ctx.opts.bool('enable') ? { enabled: true } : {}),
    ...(ctx.opts.bool('disable') ? { enabled: false } : {}),
  });
  if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give at least one of --display-name, --given-name, --surname, --role, --enable, --disable');
  return body;
}

export const userCommands: CommandSpec[] = [
  {
    words: ['user', 'create'],
    summary: 'create a user (mailbox login) in an organization',
    args: ['ORG_ID', 'LOGIN'],
    options: {
      ...PROFILE,
      'password-stdin': { type: 'boolean', help: 'read the password from stdin (prompted without echo on a terminal)' },
      'password-hash': { type: 'string', value: 'H', help: 'a Dovecot-compatible hash instead of a password ({BLF-CRYPT}...)' },
      disabled: { type: 'boolean', help: 'create it disabled (no login, no mail)' },
    },
    kind: 'api',
    run: async (ctx) => {
      ctx.api(); // fail on a missing token before prompting for a password
      return runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/users`, kind: 'user', done: 'created user',
        body: await createUserBody(ctx),
      });
    },
  },
  {
    words: ['user', 'list'],
    summary: "list an organization's users",
    args: ['ORG_ID'],
    kind: 'list',
    run: (ctx) => runList(ctx, path`/organizations/${arg(ctx, 0)}/users`, {}, 'user'),
  },
  {
    words: ['user', 'show'],
    summary: 'show one user',
    args: ['ORG_ID', 'USER_ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/organizations/${arg(ctx, 0)}/users/${arg(ctx, 1)}`, 'user'),
  },
  {
    words: ['user', 'update'],
    summary: "change a user's names, role or whether it is enabled",
    args: ['ORG_ID', 'USER_ID'],
    options: {
      ...PROFILE,
      enable: { type: 'boolean', help: 'enable the user' },
      disable: { type: 'boolean', help: 'disable the user (no login, no mail)' },
    },
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, {
        method: 'PATCH', path: path`/organizations/${arg(ctx, 0)}/users/${arg(ctx, 1)}`, kind: 'user', done: 'updated user',
        body: updateUserBody(ctx),
      }),
  },
  {
    words: ['user', 'delete'],
    summary: 'delete a user',
    args: ['ORG_ID', 'USER_ID'],
    kind: 'api',
    run: (ctx) =>
      runMutation(ctx, { method: 'DELETE', path: path`/organizations/${arg(ctx, 0)}/users/${arg(ctx, 1)}`, done: 'deleted user', id: arg(ctx, 1) }),
  },
  {
    words: ['user', 'reset-password'],
    summary: "set a user's password, read from stdin (prompted without echo on a terminal)",
    args: ['ORG_ID', 'USER_ID'],
    kind: 'api',
    run: async (ctx) => {
      ctx.api(); // fail on a missing token before prompting for a password
      const password = await readSecret(ctx.io, 'New password: ');
      if (password === '') throw new UsageError('the password read from stdin is empty');
      return runMutation(ctx, {
        method: 'POST', path: path`/organizations/${arg(ctx, 0)}/users/${arg(ctx, 1)}/password`, done: 'changed password of user', id: arg(ctx, 1),
        body: { password },
      });
    },
  },
];

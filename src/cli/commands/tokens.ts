import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { EXIT_OK, UsageError } from '../errors.js';
import { columnsOf, formatRecord, toJson } from '../output.js';
import { pickFlags, runList, runMutation, runShow } from './shared.js';

/** `--expires 2030-01-01` or a full ISO time, sent as UTC ISO-8601 (what the API speaks). */
export function parseExpiry(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new UsageError(`--expires must be an ISO-8601 date or time, got "${v}"`);
  return new Date(t).toISOString();
}

/** Body of `token create`, exported for its unit test. */
export function createTokenBody(ctx: Ctx): Record<string, unknown> {
  const expiresAt = parseExpiry(ctx.opts.str('expires'));
  return {
    ...pickFlags(ctx, { name: 'name', role: 'role', reseller: 'resellerId', org: 'orgId', user: 'userId' }),
    ...(expiresAt ? { expiresAt } : {}),
  };
}

async function createToken(ctx: Ctx): Promise<number> {
  const res = await ctx.api().post('/tokens', createTokenBody(ctx), { wait: true });
  if (ctx.json) {
    ctx.out(toJson(res.body));
    return EXIT_OK;
  }
  const { token, ...rest } = (res.body ?? {}) as Record<string, unknown>;
  ctx.out(formatRecord(rest, columnsOf('token')));
  if (res.requestId) ctx.out(`request: ${res.requestId}\n`);
  // the secret goes last and alone on its line so `| tail -1` captures it
  ctx.err('The token is shown only once; store it now.\n');
  ctx.out(`${String(token)}\n`);
  return EXIT_OK;
}

export const tokenCommands: CommandSpec[] = [
  {
    words: ['token', 'create'],
    summary: 'create an API token (printed once)',
    options: {
      name: { type: 'string', value: 'N', required: true, help: 'what the token is for (shown in the audit log)' },
      role: { type: 'string', value: 'ROLE', required: true, help: 'provider_admin, reseller_admin, organization_helpdesk, ...' },
      reseller: { type: 'string', value: 'ID', help: 'reseller the role applies to' },
      org: { type: 'string', value: 'ID', help: 'organization the role applies to' },
      user: { type: 'string', value: 'ID', help: 'user (for the self-service role `user`)' },
      expires: { type: 'string', value: 'ISO', help: 'expiry, e.g. 2030-01-01T00:00:00Z' },
    },
    kind: 'api',
    run: createToken,
  },
  {
    words: ['token', 'list'],
    summary: 'list API tokens you can see',
    kind: 'list',
    run: (ctx) => runList(ctx, '/tokens', {}, 'token'),
  },
  {
    words: ['token', 'show'],
    summary: 'show one API token (never its secret)',
    args: ['ID'],
    kind: 'api',
    run: (ctx) => runShow(ctx, path`/tokens/${arg(ctx, 0)}`, 'token'),
  },
  {
    words: ['token', 'revoke'],
    summary: 'revoke an API token',
    args: ['ID'],
    kind: 'api',
    run: (ctx) => runMutation(ctx, { method: 'DELETE', path: path`/tokens/${arg(ctx, 0)}`, done: 'revoked token', id: arg(ctx, 0) }),
  },
];

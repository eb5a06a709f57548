import type { OptionSpec } from '../args.js';
import type { Ctx } from '../command.js';
import { REQUEST_STATE_HEADER, type Query } from '../client.js';
import { CliError, EXIT_OK, EXIT_SERVER, UsageError } from '../errors.js';
import { columnsOf, formatRecord, formatTable, toJson, type ResourceKind } from '../output.js';
import { isTerminal, requestFailure, waitForRequest } from '../requests.js';

/** Option specs: a string option with its value name, a flag. */
export const str = (value: string, help: string): OptionSpec => ({ type: 'string', value, help });
export const flag = (help: string): OptionSpec => ({ type: 'boolean', help });
/** Help text of a size option (parsed by ../sizes.ts). */
export const SIZE_HELP = 'bytes or a binary size: 50GiB, 2TiB, 8PiB';

/** `--name` restricted to `allowed` values (undefined when not given). */
export function oneOf(ctx: Ctx, name: string, allowed: readonly string[]): string | undefined {
  const v = ctx.opts.str(name);
  if (v !== undefined && !allowed.includes(v)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v;
}

/** Either --yes-flag or --no-flag (or neither): both at once is a usage error. */
export function choice(ctx: Ctx, on: string, off: string): boolean | undefined {
  if (ctx.opts.bool(on) && ctx.opts.bool(off)) throw new UsageError(`give either --${on} or --${off}, not both`);
  return ctx.opts.bool(on) ? true : ctx.opts.bool(off) ? false : undefined;
}

/** Copy the defined values into a request body. */
export function assign(body: Record<string, unknown>, values: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(values)) if (v !== undefined) body[k] = v;
  return body;
}

/** Refuses an update with nothing to change before it reaches the server. */
export function nonEmpty(body: Record<string, unknown>): Record<string, unknown> {
  if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give at least one option (see --help)');
  return body;
}

interface Page {
  items: Record<string, unknown>[];
  next: string | null;
}

function asPage(body: unknown): Page {
  const b = body as { items?: unknown; next?: unknown } | null;
  if (!b || !Array.isArray(b.items)) throw new CliError('the server answered a list without items', { exitCode: EXIT_SERVER });
  return { items: b.items as Record<string, unknown>[], next: typeof b.next === 'string' && b.next !== '' ? b.next : null };
}

/** A list: one page (`--limit`, `--cursor`) or, with `--all`, every page joined into one. */
export async function runList(ctx: Ctx, p: string, query: Query, kind: ResourceKind): Promise<number> {
  const api = ctx.api();
  const limit = ctx.opts.int('limit', { min: 1 });
  const all = ctx.opts.bool('all');
  let cursor = ctx.opts.str('cursor') ?? null;
  const items: Record<string, unknown>[] = [];
  for (;;) {
    const page = asPage((await api.get(p, { ...query, limit, cursor })).body);
    items.push(...page.items);
    cursor = page.next;
    if (!all || !cursor) break;
  }
  if (ctx.json) ctx.out(toJson({ items, next: cursor }));
  else {
    ctx.out(formatTable(items, columnsOf(kind)));
    // on stderr so a script reading the table does not parse it as a row
    if (cursor) ctx.err(`more: --cursor ${cursor} (or --all)\n`);
  }
  return EXIT_OK;
}

/** GET one object and print it. */
export async function runShow(ctx: Ctx, p: string, kind: ResourceKind): Promise<number> {
  const res = await ctx.api().get(p);
  ctx.out(ctx.json ? toJson(res.body) : formatRecord(res.body, columnsOf(kind)));
  return EXIT_OK;
}

export interface MutationOptions {
  method: 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  path: string;
  body?: unknown;
  query?: Query;
  /** Resource printed from the answer (readable output), if the answer is one. */
  kind?: ResourceKind;
  /** Past-tense summary line: `created reseller`. The object id and request id are appended. */
  done: string;
  /** Id named in the summary; defaults to the answer's `id` (creates). */
  id?: string;
}

/**
 * A change: sent with `?wait=true` so the command returns when the request is terminal. The server waits at
 * most 30 s and then answers 202 with `HMC-Request-State: running`; the CLI then follows the request itself,
 * so a script that runs `hmc user create` and then uses the mailbox never sees it half-made.
 */
export async function runMutation(ctx: Ctx, m: MutationOptions): Promise<number> {
  const api = ctx.api();
  const res = await api.send(m.method, m.path, { json: m.body, query: { ...m.query, wait: true } });
  const requestId = res.requestId;
  const state = res.headers.get(REQUEST_STATE_HEADER);
  if (requestId && res.status === 202 && state && !isTerminal(state)) {
    ctx.err(`request ${requestId} is still ${state}; waiting for it\n`);
    const final = await waitForRequest(api, ctx.io, requestId);
    if (final.state === 'failed') {
      const failure = requestFailure(final);
      // with --json the failed request is the answer; the readable line still goes to stderr
      if (ctx.json) ctx.out(toJson({ request: final }));
      ctx.err(`error: ${failure.message}\n`);
      return failure.exitCode;
    }
  }
  const body: unknown = res.body;
  if (ctx.json) {
    ctx.out(toJson(body ?? null));
    return EXIT_OK;
  }
  const isObject = body !== null && typeof body === 'object';
  if (isObject && m.kind) ctx.out(formatRecord(body, columnsOf(m.kind)));
  const id = m.id ?? (isObject ? (body as { id?: unknown }).id : undefined);
  ctx.out(`${m.done}${typeof id === 'string' ? ` ${id}` : ''}${requestId ? ` (request ${requestId})` : ''}\n`);
  return EXIT_OK;
}

/** Copies the flags that were given into a body under their API names, leaving absent ones out. */
export function pickFlags(ctx: Ctx, map: Record<string, string>): Record<string, string> {
  const body: Record<string, string> = {};
  for (const [flag, field] of Object.entries(map)) {
    const v = ctx.opts.str(flag);
    if (v !== undefined) body[field] = v;
  }
  return body;
}

export const DISPLAY_NAME = { 'display-name': { type: 'string', value: 'X', help: 'display name' } } as const;

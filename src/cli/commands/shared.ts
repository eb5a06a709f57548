import type { Ctx } from '../command.js';
import type { Query } from '../client.js';
import { CliError, EXIT_OK, EXIT_SERVER } from '../errors.js';
import { columnsOf, formatRecord, formatTable, toJson, type ResourceKind } from '../output.js';
import { requestFailure, requestOf, waitForRequest, type RequestView } from '../requests.js';

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
 * A change: sent with `?wait=true` so the command returns when the request is terminal. Should the server
 * stop waiting first (a 202 with the request), the CLI follows the request itself: a script that runs
 * `hmc user create` and then uses the mailbox must never see it half-made.
 */
export async function runMutation(ctx: Ctx, m: MutationOptions): Promise<number> {
  const api = ctx.api();
  const res = await api.send(m.method, m.path, { json: m.body, query: { ...m.query, wait: true } });
  let body: unknown = res.body;
  const pending = res.status === 202 ? requestOf(body) : undefined;
  let requestId = res.requestId ?? pending?.id ?? null;
  let final: RequestView | undefined = pending;
  if (pending && pending.state !== 'succeeded' && pending.state !== 'failed') {
    final = await waitForRequest(api, ctx.io, pending.id);
    body = { request: final };
    requestId = final.id;
  }
  if (ctx.json) ctx.out(toJson(body ?? null));
  if (final?.state === 'failed') {
    const failure = requestFailure(final);
    // with --json the failed request was just printed; only the readable line goes to stderr
    if (ctx.json) {
      ctx.err(`error: ${failure.message}\n`);
      return failure.exitCode;
    }
    throw failure;
  }
  if (!ctx.json) {
    const isObject = body !== null && typeof body === 'object' && !requestOf(body);
    if (isObject && m.kind) ctx.out(formatRecord(body, columnsOf(m.kind)));
    const id = m.id ?? (isObject ? (body as { id?: unknown }).id : undefined);
    ctx.out(`${m.done}${typeof id === 'string' ? ` ${id}` : ''}${requestId ? ` (request ${requestId})` : ''}\n`);
  }
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

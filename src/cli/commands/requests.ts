import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { EXIT_OK } from '../errors.js';
import { columnsOf, formatRecord, formatTable, toJson } from '../output.js';
import { runList } from './shared.js';

/** A request: its fields, then its steps as a table (a list of objects reads badly as one line). */
export function formatRequest(view: unknown): string {
  const { steps, ...rest } = (view ?? {}) as Record<string, unknown>;
  let text = formatRecord(rest, columnsOf('request'));
  if (Array.isArray(steps) && steps.length > 0) text += `\nsteps:\n${formatTable(steps as Record<string, unknown>[], columnsOf('step'))}`;
  return text;
}

async function showRequest(ctx: Ctx): Promise<number> {
  const res = await ctx.api().get(path`/requests/${arg(ctx, 0)}`);
  ctx.out(ctx.json ? toJson(res.body) : formatRequest(res.body));
  return EXIT_OK;
}

const SCOPE = {
  org: { type: 'string', value: 'ID', help: 'only this organization' },
  reseller: { type: 'string', value: 'ID', help: 'only this reseller' },
} as const;

const scopeQuery = (ctx: Ctx) => ({ org: ctx.opts.str('org'), reseller: ctx.opts.str('reseller') });

export const requestCommands: CommandSpec[] = [
  {
    words: ['request', 'show'],
    summary: 'show a request: state, items, jobs, steps, error',
    args: ['ID'],
    kind: 'api',
    run: showRequest,
  },
  {
    words: ['request', 'list'],
    summary: 'list recent requests',
    kind: 'list',
    run: (ctx) => runList(ctx, '/requests', {}, 'request'),
  },
  {
    words: ['audit'],
    summary: 'list the audit log',
    options: SCOPE,
    kind: 'list',
    run: (ctx) => runList(ctx, '/audit', scopeQuery(ctx), 'audit'),
  },
  {
    words: ['events'],
    summary: 'list billing events',
    options: SCOPE,
    kind: 'list',
    run: (ctx) => runList(ctx, '/events', scopeQuery(ctx), 'event'),
  },
];

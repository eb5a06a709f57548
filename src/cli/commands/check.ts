import type { CommandSpec, Ctx } from '../command.js';
import { CliError, EXIT_CLIENT, EXIT_OK, EXIT_SERVER } from '../errors.js';
import { formatTable, toJson } from '../output.js';
import { createProgress } from '../progress.js';
import { isTerminal, itemCounts, requestFailure, waitForRequest, type RequestView } from '../requests.js';
import { flag } from './shared.js';

/**
 * `hmc check [--repair] [--json]` (provider roles): the Resource Manager's consistency check. Prints every
 * finding (a stored total that is not the sum of its parts, an inequality that does not hold); exit 0 when
 * there is none, 1 while drift remains. With --repair it asks the server to repair what it can (one batch
 * request, organizations then stores), follows that request, checks again and prints what remains.
 */

interface Finding {
  code: string;
  orgId: string | null;
  storeId: string | null;
  objectId: string | null;
  field: string;
  stored: unknown;
  expected: unknown;
  repairable: boolean;
  message: string;
}

interface Report {
  ok: boolean;
  findings: Finding[];
}

interface RepairStart {
  findings: number;
  repairable: number;
  items: number;
  repairRequestId: string | null;
  /** Data plane repairs (quota recalculations, purged mailboxes' directories), done before the answer. */
  dataplaneItems?: number;
  dataplaneRequestId?: string | null;
}

const COLUMNS = ['code', 'orgId', 'storeId', 'objectId', 'field', 'stored', 'expected', 'repairable', 'message'];

async function check(ctx: Ctx): Promise<Report> {
  const body = (await ctx.api().get('/check')).body as Report | null;
  if (!body || typeof body.ok !== 'boolean' || !Array.isArray(body.findings)) throw new CliError('the server answered the check without findings', { exitCode: EXIT_SERVER });
  return body;
}

function summary(r: Report): string {
  if (r.ok) return 'no drift found\n';
  const repairable = r.findings.filter((f) => f.repairable).length;
  return `${r.findings.length} finding(s), ${repairable} repairable${repairable > 0 ? ' (hmc check --repair)' : ''}\n`;
}

/** Follows the repair batch with a progress line on stderr; returns its final view. */
async function follow(ctx: Ctx, requestId: string): Promise<RequestView> {
  ctx.err(`repair: request ${requestId} (follow with: hmc request show ${requestId})\n`);
  const progress = createProgress(ctx.io.stderr, 'repair');
  try {
    return await waitForRequest(ctx.api(), ctx.io, requestId, (v) => {
      const n = itemCounts(v);
      if (n) progress.update(n.done, n.failed, n.total);
    });
  } finally {
    progress.finish();
  }
}

async function run(ctx: Ctx): Promise<number> {
  if (!ctx.opts.bool('repair')) {
    const report = await check(ctx);
    if (ctx.json) ctx.out(toJson(report));
    else {
      if (!report.ok) ctx.out(formatTable(report.findings as unknown as Record<string, unknown>[], COLUMNS));
      ctx.out(summary(report));
    }
    return report.ok ? EXIT_OK : EXIT_CLIENT;
  }
  const started = (await ctx.api().post('/check/repair', undefined, { wait: true })).body as RepairStart;
  let request: RequestView | null = null;
  if (started?.repairRequestId) {
    request = await follow(ctx, started.repairRequestId);
    if (!isTerminal(request.state) || request.state === 'failed') {
      const failure = requestFailure(request);
      if (ctx.json) ctx.out(toJson({ repair: { ...started, request } }));
      ctx.err(`error: ${failure.message}\n`);
      return failure.exitCode;
    }
  }
  const after = await check(ctx);
  const counts = request ? itemCounts(request) : undefined;
  if (ctx.json) {
    ctx.out(toJson({ ...after, repair: { ...started, state: request?.state ?? null, failedItems: counts?.failed ?? 0 } }));
  } else {
    ctx.out(started.repairRequestId
      ? `repaired: ${started.findings} finding(s) before, ${started.items} organization(s) and store(s) repaired${counts?.failed ? `, ${counts.failed} failed` : ''} (request ${started.repairRequestId})\n`
      : `nothing to repair in the database: ${started.findings} finding(s), none repairable\n`);
    if (started.dataplaneRequestId) ctx.out(`data plane: ${started.dataplaneItems ?? 0} repair(s) (request ${started.dataplaneRequestId})\n`);
    if (!after.ok) ctx.out(formatTable(after.findings as unknown as Record<string, unknown>[], COLUMNS));
    ctx.out(summary(after));
  }
  return after.ok ? EXIT_OK : EXIT_CLIENT;
}

export const checkCommands: CommandSpec[] = [
  {
    words: ['check'],
    summary: 'verify counters, allocations, store totals and owners against their parts (provider roles); exit 1 while drift remains',
    options: { repair: flag('repair what can be repaired through the engine, then check again') },
    kind: 'api',
    run,
  },
];

import { readFile } from 'node:fs/promises';
import { arg, type CommandSpec, type Ctx } from '../command.js';
import { path } from '../client.js';
import { CliError, EXIT_CLIENT, EXIT_OK, EXIT_SERVER } from '../errors.js';
import { readAll } from '../io.js';
import { formatTable, toJson } from '../output.js';
import { createProgress } from '../progress.js';
import { fetchItems, isTerminal, itemCounts, requestFailure, requestOf, waitForRequest, type RequestItem, type RequestView } from '../requests.js';

/** The columns the server's importer reads (header row required). */
export const CSV_COLUMNS = ['login', 'displayName', 'givenName', 'surname', 'password', 'passwordHash', 'enabled', 'role'] as const;

/**
 * One line per row: ROW is the data row (1 = the first row after the header), as a spreadsheet user counts;
 * `key` is the input field that names the row's object (`login` for users, `primaryAddress` for mailboxes).
 */
export function formatImportReport(request: RequestView, items: RequestItem[], key = 'login'): string {
  const rows = [...items]
    .sort((a, b) => a.seq - b.seq)
    .map((it) => ({
      row: it.seq + 1,
      [key]: it.input?.[key] ?? null,
      result: it.state === 'succeeded' ? 'ok' : it.state === 'failed' ? 'failed' : it.state,
      error: it.error ? [it.error.code, it.error.message].filter(Boolean).join(': ') : null,
    }));
  const failed = rows.filter((r) => r.result !== 'ok').length;
  const ok = rows.length - failed;
  return (
    formatTable(rows, ['row', key, 'result', 'error']) +
    `imported ${ok} of ${rows.length} rows${failed > 0 ? `, ${failed} failed` : ''} (request ${request.id}, ${request.state})\n`
  );
}

async function readCsv(ctx: Ctx, file: string): Promise<string> {
  let text: string;
  try {
    text = file === '-' ? await readAll(ctx.io.stdin) : await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as Error).message}`, { exitCode: EXIT_CLIENT });
  }
  // spreadsheet programs save UTF-8 with a byte-order mark, which would become part of the first column's name
  return text.replace(/^\uFEFF/, '');
}

/**
 * `hmc import users` (and mailboxes, aliases): the server parses the CSV and runs one batch request, one item
 * per row, each row committed or refused on its own (STYLE 12). The CLI only uploads, follows the request and
 * reports rows, naming each by the input field `reportKey`.
 */
export async function runImport(ctx: Ctx, importPath: string, reportKey: string): Promise<number> {
  const api = ctx.api();
  const data = await readCsv(ctx, arg(ctx, 1));
  const key = ctx.opts.str('idempotency-key');
  const res = await api.send('POST', importPath, {
    raw: { data, contentType: 'text/csv' },
    ...(key ? { headers: { 'idempotency-key': key } } : {}),
  });
  const started = requestOf(res.body);
  if (!started) throw new CliError('the server accepted the import but did not name its request', { exitCode: EXIT_SERVER });
  // the id first: after Ctrl-C the import goes on, and this is how to find it again
  ctx.err(`import: request ${started.id} (follow with: hmc request show ${started.id})\n`);

  const progress = createProgress(ctx.io.stderr, 'import');
  const onView = (v: RequestView) => {
    const n = itemCounts(v);
    if (n) progress.update(n.done, n.failed, n.total);
  };
  let final: RequestView;
  try {
    final = isTerminal(started.state) ? started : await waitForRequest(api, ctx.io, started.id, onView);
  } finally {
    progress.finish();
  }

  const items = await fetchItems(api, final.id);
  if (ctx.json) ctx.out(toJson({ request: final, items }));
  else ctx.out(formatImportReport(final, items, reportKey));
  if (final.state === 'failed') {
    const failure = requestFailure(final);
    ctx.err(`error: ${failure.message}\n`);
    return failure.exitCode;
  }
  const anyFailed = items.some((i) => i.state !== 'succeeded') || (itemCounts(final)?.failed ?? 0) > 0;
  return anyFailed ? EXIT_CLIENT : EXIT_OK;
}

export const IMPORT_OPTIONS = {
  'idempotency-key': { type: 'string', value: 'K', help: 'run again with the same key after a lost answer: the server returns the first import instead of importing twice' },
} as const;

export const importCommands: CommandSpec[] = [
  {
    words: ['import', 'users'],
    summary: `import users from a CSV file ("-" for stdin); columns: ${CSV_COLUMNS.join(',')}`,
    args: ['ORG_ID', 'FILE'],
    options: IMPORT_OPTIONS,
    kind: 'api',
    run: (ctx) => runImport(ctx, path`/organizations/${arg(ctx, 0)}/users/import`, 'login'),
  },
];

import { readCsvTable } from '../core/csv.js';
import { Errors } from '../core/errors.js';

/**
 * CSV import/export of Hosted Email objects (issue 3 item 5). Parsing is all-or-nothing only for the
 * file's shape (unreadable CSV, unknown column, no rows: invalid_csv); a bad VALUE is passed on as it is
 * and fails that row's validation in the batch, so one bad row never aborts the rest (STYLE 12).
 */

/**
 * The rows of a CSV with a header row (see readCsvTable), with the formula guard of our exports undone.
 */
export function parseCsvTable(text: string, allowed: readonly string[], required: readonly string[] = []): Record<string, string>[] {
  const rows = readCsvTable(text, allowed, required);
  return rows.map((r) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(r)) out[k] = unguard(v);
    return out;
  });
}

// A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection): a
// display name "=HYPERLINK(...)" exported and opened in Excel would be live. Exports prefix such cells
// with an apostrophe, which spreadsheets show as text, and imports remove it again, so data round-trips.
const FORMULA_START = /^[=+\-@\t\r]/;

function unguard(cell: string): string {
  return cell.startsWith("'") && FORMULA_START.test(cell.slice(1)) ? cell.slice(1) : cell;
}

/** One CSV cell: formula-guarded, quoted when it holds a separator, quote, line break or edge spaces. */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let s = typeof value === 'string' ? value : String(value);
  if (FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One CSV line (CRLF, as RFC 4180 and spreadsheet programs expect). */
export function csvLine(cells: readonly unknown[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

/** true/false/yes/no/1/0 (any case) as a boolean; anything else stays text and fails that row's validation. */
export function csvBool(v: string): boolean | string {
  const b = ({ true: true, yes: true, '1': true, false: false, no: false, '0': false } as Record<string, boolean>)[v.toLowerCase()];
  return b ?? v;
}

/** A list cell: addresses separated by spaces (what exports write), commas or semicolons. */
export function csvList(v: string): string[] {
  return v.split(/[\s,;]+/).filter(Boolean);
}

// ---- mailboxes ----

/**
 * Columns of a mailbox CSV, in export order. `aliases` are space-separated; `forwarding` is
 * `MODE:ADDRESS` (forward_only:x@y or deliver_and_forward:x@y); `login` names the user of a user
 * mailbox (an import finds the user by it, or by primaryAddress when it is empty).
 */
export const MAILBOX_CSV_COLUMNS = ['primaryAddress', 'kind', 'displayName', 'planId', 'aliases', 'hidden', 'enabled', 'forwarding', 'login'] as const;
/** Import-only: the user's id instead of its login. */
export const MAILBOX_IMPORT_COLUMNS = [...MAILBOX_CSV_COLUMNS, 'userId'] as const;

/** `forward_only:bob@x.example` → {mode, to}; anything else stays text and fails that row's validation. */
export function parseForwarding(v: string): { to: string; mode: string } | string {
  const m = /^(forward_only|deliver_and_forward):(.+)$/.exec(v);
  return m ? { mode: m[1]!, to: m[2]!.trim() } : v;
}

export function formatForwarding(f: { to: string; mode: string } | null): string {
  return f ? `${f.mode}:${f.to}` : '';
}

/** A CSV row as mailbox-create input (without orgId and the user, which the route resolves). */
export function mailboxRowToItem(r: Record<string, string>): Record<string, unknown> {
  const item: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === '' || k === 'login') continue;
    if (k === 'aliases') item.aliases = csvList(v);
    else if (k === 'hidden') item.hiddenFromAddressBook = csvBool(v);
    else if (k === 'enabled') {
      // a new mailbox is enabled; "false" is passed on, so the row fails instead of importing it enabled
      const b = csvBool(v);
      if (b !== true) item.enabled = b;
    } else if (k === 'forwarding') item.forwarding = parseForwarding(v);
    else item[k] = v;
  }
  return item;
}

/** What a mailbox export row is made of: the API view plus the user's login. */
export interface MailboxExportRow {
  primaryAddress: string;
  kind: string;
  displayName: string;
  planId: string;
  aliases: string[];
  hiddenFromAddressBook: boolean;
  enabled: boolean;
  forwarding: { to: string; mode: string } | null;
  login: string | null;
}

export function mailboxCsvLine(m: MailboxExportRow): string {
  return csvLine([m.primaryAddress, m.kind, m.displayName, m.planId, m.aliases.join(' '), m.hiddenFromAddressBook, m.enabled, formatForwarding(m.forwarding), m.login]);
}

// ---- aliases ----

/** Columns of an alias CSV: the mailbox (its address, any of them, or its mbx_ id) and the alias to add. */
export const ALIAS_CSV_COLUMNS = ['mailbox', 'alias'] as const;

// ---- groups ----

/** Columns of a group export: one row per mail-enabled group, members' addresses space-separated. */
export const GROUP_CSV_COLUMNS = ['name', 'address', 'members', 'hidden', 'sendPolicy', 'displayName', 'description', 'managers'] as const;
/** Columns of a group-member import: the group (its address, name or grp_ id) and the member's address or id. */
export const GROUP_MEMBER_CSV_COLUMNS = ['group', 'member'] as const;

import { parse as parseCsv } from 'csv-parse/sync';
import { Errors } from './errors.js';

/** Largest CSV record; a larger one is almost certainly a file that is not what the header says. */
const MAX_RECORD = 16_384;

/**
 * The rows of a CSV with a header row, as column → cell (trimmed; a byte-order mark dropped), for every
 * import. Throws invalid_csv when it cannot be read, has no rows, lacks a `required` column or has one not
 * in `allowed`. Cell values are not judged here: a bad value fails its own row later (STYLE 12).
 */
export function readCsvTable(text: string, allowed: readonly string[], required: readonly string[] = []): Record<string, string>[] {
  let rows: Record<string, string>[];
  try {
    rows = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true, bom: true, max_record_size: MAX_RECORD });
  } catch (e) {
    throw Errors.invalidCsv(`the CSV cannot be read: ${(e as Error).message.slice(0, 200)}`);
  }
  if (rows.length === 0) throw Errors.invalidCsv('the CSV has no rows');
  const columns = Object.keys(rows[0]!);
  const unknown = columns.filter((c) => !allowed.includes(c));
  if (unknown.length > 0) throw Errors.invalidCsv(`unknown column(s) ${unknown.join(', ')}; allowed: ${allowed.join(', ')}`);
  const missing = required.filter((c) => !columns.includes(c));
  if (missing.length > 0) throw Errors.invalidCsv(`missing column(s) ${missing.join(', ')}`);
  return rows;
}

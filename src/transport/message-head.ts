/**
 * The header block of a message streaming through the transport agent: split off without buffering the body
 * (messages may be 100 MiB; only the head is held), read as fields, rewritten (the agent's stamp removed or
 * added) and put back in front of the untouched body.
 *
 * Field text is kept as `latin1` strings, i.e. one char per byte: headers of real mail carry raw 8-bit bytes,
 * and whatever they hold must leave the agent byte for byte as it came in. Decoding (RFC 2047) is for the few
 * values the agent reads (Subject of an auto-reply), never for what it forwards.
 */

/** A head larger than this is not looked at: passed on untouched, as if it had no fields (no stamp, no auto-reply). */
export const MAX_HEAD_BYTES = 256 * 1024;

export interface SplitMessage {
  /** The header block without its terminating empty line; null when it could not be found within MAX_HEAD_BYTES. */
  head: Buffer | null;
  /** The blank line and everything after it (or, with head null, the whole message), as it arrives. */
  rest: AsyncIterable<Buffer>;
}

const SEP_CRLF = Buffer.from('\r\n\r\n');
const SEP_LF = Buffer.from('\n\n');

function findSeparator(buf: Buffer): { at: number; len: number } | null {
  const crlf = buf.indexOf(SEP_CRLF);
  const lf = buf.indexOf(SEP_LF);
  if (crlf < 0 && lf < 0) return null;
  if (lf < 0 || (crlf >= 0 && crlf < lf)) return { at: crlf, len: 2 };
  return { at: lf, len: 1 };
}

/**
 * Read `src` until the end of the header block. The body is not read: `rest` continues the same iterator,
 * so back-pressure reaches the sender. A message with no body (no empty line at all) is all head.
 */
export async function splitHead(src: AsyncIterable<Buffer>): Promise<SplitMessage> {
  const it = src[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const next = await it.next();
    if (next.done) {
      const all = Buffer.concat(chunks);
      if (all.length > MAX_HEAD_BYTES) return { head: null, rest: continueWith([all], null) };
      const sep = findSeparator(all);
      if (sep) return { head: all.subarray(0, sep.at), rest: continueWith([all.subarray(sep.at + sep.len)], null) };
      // no empty line: a message of headers only (or not a message at all)
      const trimmed = all.toString('latin1').replace(/\r?\n$/, '');
      return { head: Buffer.from(trimmed, 'latin1'), rest: continueWith([], null) };
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    chunks.push(chunk);
    size += chunk.length;
    // a separator may straddle two chunks: search the joined tail
    const joined = chunks.length === 1 ? chunk : Buffer.concat(chunks);
    if (chunks.length > 1) chunks.splice(0, chunks.length, joined);
    const sep = findSeparator(joined);
    if (sep && sep.at <= MAX_HEAD_BYTES) return { head: joined.subarray(0, sep.at), rest: continueWith([joined.subarray(sep.at + sep.len)], it) };
    if (size > MAX_HEAD_BYTES) return { head: null, rest: continueWith([joined], it) };
  }
}

async function* continueWith(first: Buffer[], it: AsyncIterator<Buffer> | null): AsyncIterable<Buffer> {
  for (const b of first) if (b.length) yield b;
  if (!it) return;
  for (;;) {
    const next = await it.next();
    if (next.done) return;
    yield Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
  }
}

export interface HeaderField {
  /** Lower-case field name. */
  name: string;
  /** The value with folding removed and outer white space trimmed (latin1, undecoded). */
  value: string;
  /** The field exactly as it came, folded lines included, without the final line break. */
  raw: string;
}

/** Fields of a header block in order. A line that is neither a field nor a continuation is kept as a nameless field. */
export function parseFields(head: Buffer): HeaderField[] {
  const text = head.toString('latin1');
  if (text === '') return [];
  const out: HeaderField[] = [];
  for (const raw of text.split(/\r?\n(?![ \t])/)) {
    const colon = raw.indexOf(':');
    const name = colon > 0 && !/[\s]/.test(raw.slice(0, colon)) ? raw.slice(0, colon).toLowerCase() : '';
    out.push({ name, value: colon > 0 ? raw.slice(colon + 1).replace(/\r?\n[ \t]+/g, ' ').trim() : '', raw });
  }
  return out;
}

/** The first value of a field, or undefined. */
export function field(fields: HeaderField[], name: string): string | undefined {
  return fields.find((f) => f.name === name)?.value;
}

/** A header block (with its terminating empty line) from fields, CRLF line ends. */
export function joinFields(fields: HeaderField[]): Buffer {
  return Buffer.from(fields.map((f) => `${f.raw.replace(/\r?\n/g, '\r\n')}\r\n`).join('') + '\r\n', 'latin1');
}

/** A whole message again: `head` (already ending with its empty line) in front of the rest, as a stream. */
export async function* withHead(head: Buffer, rest: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  yield head;
  let first = true;
  for await (const chunk of rest) {
    // `rest` starts at the separator's remaining line break(s); the new head already ends with its empty line
    if (first) {
      first = false;
      const skip = chunk[0] === 0x0d && chunk[1] === 0x0a ? 2 : chunk[0] === 0x0a ? 1 : 0;
      if (skip) {
        if (chunk.length > skip) yield chunk.subarray(skip);
        continue;
      }
    }
    yield chunk;
  }
}

/** The message exactly as it came in: `head` as split off, its line break, then the rest (the agent changed nothing). */
export async function* unsplit(head: Buffer, rest: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  yield head;
  let first = true;
  for await (const chunk of rest) {
    // `rest` starts with the separator's second line break: the first one ended the head's last field
    if (first) {
      first = false;
      yield Buffer.from(chunk[0] === 0x0d ? '\r\n' : '\n');
    }
    yield chunk;
  }
}

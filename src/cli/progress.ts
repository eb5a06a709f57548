/**
 * Progress of a batch on stderr (stdout stays clean for the report or `--json`). On a terminal: one bar
 * redrawn in place. Elsewhere (CI logs, files): one line each time another 10% is done, so a log of a
 * 100,000-row import stays ten lines long.
 */

export interface Progress {
  update(done: number, failed: number, total: number): void;
  /** Ends the bar's line (terminal) so later output starts on a fresh line. */
  finish(): void;
}

/** `[########------------]  40%` for `width` cells; a zero total counts as complete. */
export function renderBar(done: number, total: number, width = 30): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}%`;
}

/** `40/100 rows, 2 failed`. */
export function describe(done: number, failed: number, total: number): string {
  return `${done}/${total} rows${failed > 0 ? `, ${failed} failed` : ''}`;
}

/** The 10% step `done/total` has reached (0..10). */
export function decile(done: number, total: number): number {
  return total > 0 ? Math.min(10, Math.floor((done * 10) / total)) : 10;
}

export function createProgress(stream: { write(s: string): unknown; isTTY?: boolean }, label: string): Progress {
  if (stream.isTTY) {
    let shown = '';
    return {
      update(done, failed, total) {
        const line = `${label} ${renderBar(done, total)} ${describe(done, failed, total)}`;
        if (line === shown) return; // a poll that changed nothing would only make the line flicker
        // \r plus clear-to-end-of-line: a shorter line must not leave the old one's tail behind
        stream.write(`\r\x1b[K${line}`);
        shown = line;
      },
      finish() {
        if (shown) stream.write('\n');
        shown = '';
      },
    };
  }
  let last = -1;
  return {
    update(done, failed, total) {
      const d = decile(done, total);
      if (d <= last) return;
      last = d;
      stream.write(`${label} ${d * 10}% (${describe(done, failed, total)})\n`);
    },
    finish() {},
  };
}

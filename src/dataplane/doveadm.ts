import { execFile } from 'node:child_process';

/**
 * Running `doveadm -c CONF …` against a data plane's Dovecot and reading its `-f tab` output. No shell: the
 * arguments go to the program as they are. doveadm's exit codes: 0 ok, 67 unknown user, 68 some users failed
 * (with -A: the others are still printed), 75 temporary failure.
 */

export interface DoveadmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function doveadm(conf: string, args: string[], opts: { timeoutMs?: number; maxBuffer?: number } = {}): Promise<DoveadmResult> {
  return new Promise((resolve, reject) => {
    execFile('doveadm', ['-c', conf, ...args], { timeout: opts.timeoutMs ?? 30_000, encoding: 'utf8', maxBuffer: opts.maxBuffer ?? 256 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err); // not started, killed by the timeout, …
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      });
  });
}

/** Rows of `-f tab` output as objects keyed by the header's (lower-cased) column names. */
export function parseTab(output: string): Record<string, string>[] {
  const lines = output.split('\n').filter((l) => l.length > 0);
  if (lines.length === 0) return [];
  const head = lines[0]!.split('\t').map((h) => h.trim().toLowerCase());
  return lines.slice(1).map((l) => {
    const cells = l.split('\t');
    return Object.fromEntries(head.map((h, i) => [h, cells[i] ?? '']));
  });
}

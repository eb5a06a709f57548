/** An `application/problem+json` body as the API sends it (every field optional: it came over the wire). */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: { path: string; message: string }[];
}

/** Exit codes scripts can rely on: 1 = the caller's mistake (4xx, bad usage), 2 = the server's or the network's. */
export const EXIT_OK = 0;
export const EXIT_CLIENT = 1;
export const EXIT_SERVER = 2;

/** The one error the CLI prints and turns into an exit code; carries the problem when the server sent one. */
export class CliError extends Error {
  readonly exitCode: number;
  readonly problem: Problem | undefined;
  /** The error body exactly as the server sent it (what `--json` prints). */
  readonly body: unknown;

  constructor(message: string, opts: { exitCode?: number; problem?: Problem; body?: unknown; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CliError';
    this.exitCode = opts.exitCode ?? EXIT_CLIENT;
    this.problem = opts.problem;
    this.body = opts.body ?? opts.problem;
  }

  /** From an HTTP error answer: 4xx is the caller's problem, anything else the server's. */
  static fromProblem(status: number, problem: Problem, body?: unknown): CliError {
    const exitCode = status >= 400 && status < 500 ? EXIT_CLIENT : EXIT_SERVER;
    const p = { ...problem, status: problem.status ?? status };
    // a non-JSON error page (a proxy's HTML) is no use to a script: fall back to the normalised problem
    const raw = body !== null && typeof body === 'object' ? body : p;
    return new CliError(formatProblem(p), { exitCode, problem: p, body: raw });
  }
}

/** Wrong flags or arguments: the message is followed by the command's usage. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, { exitCode: EXIT_CLIENT });
    this.name = 'UsageError';
  }
}

/** Reads a problem out of an unknown JSON body; anything unexpected is ignored rather than trusted. */
export function toProblem(body: unknown, status: number, statusText = ''): Problem {
  const p: Problem = { status };
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    if (typeof b.type === 'string') p.type = b.type;
    if (typeof b.title === 'string') p.title = b.title;
    if (typeof b.detail === 'string') p.detail = b.detail;
    if (typeof b.code === 'string') p.code = b.code;
    if (Array.isArray(b.errors)) {
      p.errors = b.errors
        .filter((e): e is Record<string, unknown> => !!e && typeof e === 'object')
        .map((e) => ({ path: String(e.path ?? ''), message: String(e.message ?? '') }));
    }
  }
  if (!p.title) p.title = statusText || `HTTP ${status}`;
  return p;
}

/** One readable block: "Title: detail (code x, HTTP n)" then one line per field error. */
export function formatProblem(p: Problem): string {
  const head = [p.title, p.detail].filter((s) => s && s.length > 0).join(': ') || 'request failed';
  const tags = [p.code ? `code ${p.code}` : '', p.status ? `HTTP ${p.status}` : ''].filter(Boolean).join(', ');
  const lines = [tags ? `${head} (${tags})` : head];
  for (const e of p.errors ?? []) lines.push(`  ${e.path || '(body)'}: ${e.message}`);
  return lines.join('\n');
}

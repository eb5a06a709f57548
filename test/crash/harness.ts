/**
 * Mechanics of the crash test: real child processes (test/crash/serve.ts) that can be frozen,
 * inspected and SIGKILLed, a seeded PRNG, and an HTTP client that retries an unanswered request with
 * the same Idempotency-Key until it gets an answer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const SERVE = join(HERE, 'serve.ts');
const REPO = join(HERE, '..', '..');

/** Every child started in this test process, so none outlives it even when a test fails. */
const LIVE = new Set<Child>();
process.on('exit', () => {
  for (const c of LIVE) c.signal('SIGKILL');
});

/** SIGKILL every child this test process started that is still alive. */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...LIVE].map((c) => c.kill()));
}

export { freePort } from '../ports.js';

export { prng } from '../prng.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One `serve.ts` process. */
export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  /** Its workers' lease owner ids (jobs.locked_by), known once ready. */
  owners: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private readonly tail: string[] = [];
  private alive = true;

  private constructor(name: string, mode: 'serve' | 'worker', env: Record<string, string>) {
    this.name = name;
    this.proc = spawn(process.execPath, ['--import', 'tsx', SERVE, mode], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    LIVE.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.alive = false;
        LIVE.delete(this);
        resolve({ code, signal });
      });
    });
    for (const stream of [this.proc.stdout!, this.proc.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.line(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
  }

  private onReady: ((owners: string[]) => void) | null = null;

  private line(l: string): void {
    this.tail.push(l);
    if (this.tail.length > 60) this.tail.shift();
    if (l.startsWith('{"ready":true')) {
      try {
        this.onReady?.((JSON.parse(l) as { owners: string[] }).owners);
      } catch {
        /* not our line */
      }
    }
  }

  /** Start a child and wait until it prints its ready line. */
  static async start(name: string, mode: 'serve' | 'worker', env: Record<string, string>, timeoutMs = 60_000): Promise<Child> {
    const c = new Child(name, mode, env);
    const ready = new Promise<string[]>((resolve) => {
      c.onReady = resolve;
    });
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      ready.then((owners) => ({ owners })),
      c.exited.then((e) => ({ exit: e })),
      new Promise<{ timeout: true }>((r) => {
        timer = setTimeout(() => r({ timeout: true }), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if ('owners' in outcome) {
      c.owners = outcome.owners;
      return c;
    }
    await c.kill();
    throw new Error(`${name} did not start (${JSON.stringify(outcome)}):\n${c.logTail()}`);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.alive;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  /** SIGSTOP: the process stops wherever it is, mid-request or mid-job. */
  freeze(): void {
    this.signal('SIGSTOP');
  }

  thaw(): void {
    this.signal('SIGCONT');
  }

  /** SIGKILL and wait until the process is gone. */
  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  logTail(n = 30): string {
    return this.tail.slice(-n).map((l) => `  [${this.name}] ${l}`).join('\n');
  }
}

export interface Answer {
  status: number;
  headers: Headers;
  body: any;
  /** HTTP attempts it took (1 = answered the first time). */
  attempts: number;
}

export interface ClientStats {
  /** Re-sends after a network error or a timeout (the server was killed or frozen). */
  retries: number;
  /** 5xx answers (re-sent too, but each one is a bug). */
  serverErrors: Array<{ status: number; body: string }>;
}

/**
 * Send a request and keep re-sending it, with the same Idempotency-Key, until the server answers
 * something other than a network error or 5xx. The server may be dead, restarting or frozen meanwhile.
 */
export async function sendUntilAnswered(
  base: string,
  method: string,
  path: string,
  opts: { token: string; body?: unknown; key?: string; stats: ClientStats; deadlineMs?: number },
): Promise<Answer> {
  const deadline = Date.now() + (opts.deadlineMs ?? 90_000);
  let attempts = 0;
  let delay = 25;
  for (;;) {
    attempts++;
    try {
      const r = await fetch(base + path, {
        method,
        headers: {
          authorization: `Bearer ${opts.token}`,
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(opts.key ? { 'idempotency-key': opts.key } : {}),
        },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: AbortSignal.timeout(20_000),
      });
      const text = await r.text();
      if (r.status < 500) {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* keep the text */
        }
        return { status: r.status, headers: r.headers, body, attempts };
      }
      opts.stats.serverErrors.push({ status: r.status, body: text.slice(0, 500) });
    } catch {
      // connection refused / reset / timed out: the server died under us; ask again, same key
    }
    if (Date.now() > deadline) throw new Error(`${method} ${path} got no answer in time (${attempts} attempts)`);
    opts.stats.retries++;
    await sleep(delay);
    delay = Math.min(250, delay * 2);
  }
}

/**
 * Everything a command touches outside itself. Commands never use `process` directly, so unit tests can
 * run them against strings and a fake fetch, and `main()` stays callable from another program.
 */
export interface Io {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  env: NodeJS.ProcessEnv;
  fetch: typeof fetch;
  /** Calls `handler` on SIGINT/SIGTERM (long-running commands stop on it); returns the unsubscribe. */
  onStopSignal(handler: (signal: string) => void): () => void;
  sleep(ms: number): Promise<void>;
  /** Ends the process now (a second Ctrl-C while stopping). */
  exit(code: number): void;
}

/** The real process. */
export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    fetch: globalThis.fetch,
    onStopSignal(handler) {
      process.on('SIGINT', handler);
      process.on('SIGTERM', handler);
      return () => {
        process.off('SIGINT', handler);
        process.off('SIGTERM', handler);
      };
    },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    exit: (code) => process.exit(code),
  };
}

/** Reads all of stdin as UTF-8. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A secret from stdin, never from argv (argv is visible to every user in `ps`). On a terminal it prompts
 * with echo off; from a pipe it reads everything and drops one trailing newline (what `echo` adds).
 */
export async function readSecret(io: Io, prompt: string): Promise<string> {
  if (io.stdin.isTTY && io.stdin.setRawMode) return promptHidden(io, prompt);
  return (await readAll(io.stdin)).replace(/\r?\n$/, '');
}

function promptHidden(io: Io, prompt: string): Promise<string> {
  const stdin = io.stdin as NodeJS.ReadStream;
  io.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  let value = '';
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      io.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(new Error('cancelled'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

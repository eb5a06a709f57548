import type { CommandShape, Opts } from './args.js';
import { ApiClient, DEFAULT_URL } from './client.js';
import { UsageError } from './errors.js';
import type { Io } from './io.js';

/** What a running command gets: its arguments, its flags and the outside world. */
export interface Ctx {
  io: Io;
  args: string[];
  opts: Opts;
  /** `--json`: print the raw answer instead of a table. */
  json: boolean;
  /** The API client from --url/HMC_URL and --token/HMC_TOKEN; created on first use. */
  api(): ApiClient;
  out(s: string): void;
  err(s: string): void;
}

export interface CommandSpec extends CommandShape {
  /** Returns the exit code; throws CliError for failures that are printed the usual way. */
  run(ctx: Ctx): Promise<number>;
}

/** The context of one command run. */
export function makeCtx(io: Io, args: string[], opts: Opts): Ctx {
  let client: ApiClient | undefined;
  return {
    io,
    args,
    opts,
    json: opts.bool('json'),
    api() {
      if (client) return client;
      const token = opts.str('token') ?? io.env.HMC_TOKEN;
      if (!token) throw new UsageError('no API token: pass --token or set HMC_TOKEN (`hmc init` prints the first one)');
      const url = opts.str('url') ?? (io.env.HMC_URL || DEFAULT_URL);
      const timeout = Number(io.env.HMC_TIMEOUT_MS);
      client = new ApiClient({ url, token, fetch: io.fetch, ...(timeout > 0 ? { timeoutMs: timeout } : {}) });
      return client;
    },
    out: (s) => void io.stdout.write(s),
    err: (s) => void io.stderr.write(s),
  };
}

/** The one positional argument at `i`, which the parser guaranteed is present. */
export function arg(ctx: Ctx, i: number): string {
  const v = ctx.args[i];
  if (v === undefined) throw new UsageError(`missing argument ${i + 1}`);
  return v;
}

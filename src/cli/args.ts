import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

/** One flag of a command. Names are the long flag without dashes (`display-name`). */
export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  required?: boolean;
  /** Placeholder in the usage line, e.g. `ID`. */
  value?: string;
  help: string;
}

/**
 * What a command accepts. `local` commands open the database themselves; `api` commands talk HTTP and take
 * --url/--token/--json; `list` commands are `api` commands that also page (--limit/--cursor/--all).
 */
export interface CommandShape {
  /** The words that select it: `['org', 'create']`. */
  words: string[];
  summary: string;
  /** Positional names; `NAME?` is optional, `NAME...` takes the rest. */
  args?: string[];
  options?: Record<string, OptionSpec>;
  kind: 'local' | 'api' | 'list';
}

export const API_OPTIONS: Record<string, OptionSpec> = {
  url: { type: 'string', value: 'URL', help: 'server URL (env HMC_URL, default http://127.0.0.1:8080)' },
  token: { type: 'string', value: 'TOKEN', help: 'API token (env HMC_TOKEN; prefer the env: argv is visible in ps)' },
  json: { type: 'boolean', help: 'print the raw JSON answer' },
};

export const LIST_OPTIONS: Record<string, OptionSpec> = {
  limit: { type: 'string', value: 'N', help: 'items per page' },
  cursor: { type: 'string', value: 'C', help: 'continue from this cursor (printed after a partial page)' },
  all: { type: 'boolean', help: 'follow every page' },
};

const HELP_OPTION: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h', help: 'show this help' } };

/** Every option a command takes: its own plus the common ones of its kind. */
export function allOptions(shape: CommandShape): Record<string, OptionSpec> {
  return {
    ...shape.options,
    ...(shape.kind === 'local' ? {} : API_OPTIONS),
    ...(shape.kind === 'list' ? LIST_OPTIONS : {}),
    ...HELP_OPTION,
  };
}

/** Typed access to parsed flags; conversions fail as usage errors naming the flag. */
export class Opts {
  constructor(private readonly values: Record<string, unknown>) {}

  str(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  list(name: string): string[] {
    const v = this.values[name];
    return Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : [];
  }

  int(name: string, range: { min?: number; max?: number } = {}): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be an integer, got "${v}"`);
    if (range.min !== undefined && n < range.min) throw new UsageError(`--${name} must be at least ${range.min}`);
    if (range.max !== undefined && n > range.max) throw new UsageError(`--${name} must be at most ${range.max}`);
    return n;
  }
}

export interface Parsed {
  opts: Opts;
  args: string[];
  help: boolean;
}

/** Parses the words after the command's own words. Unknown flags and wrong argument counts are usage errors. */
export function parseCommand(shape: CommandShape, argv: string[]): Parsed {
  const options = allOptions(shape);
  const config: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, o] of Object.entries(options)) {
    config[name] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: config, strict: true, allowPositionals: true });
  } catch (e) {
    // node's messages are good ("Unknown option '--nme'"); drop its hint about '--' which confuses more than helps
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const opts = new Opts(parsed.values);
  const help = opts.bool('help');
  if (help) return { opts, args: parsed.positionals, help };

  const specs = shape.args ?? [];
  const variadic = specs.at(-1)?.endsWith('...') ?? false;
  const required = specs.filter((a) => !a.endsWith('?') && !a.endsWith('...')).length;
  const got = parsed.positionals;
  if (got.length < required) throw new UsageError(`missing ${specs.slice(got.length, required).join(' ')}`);
  if (!variadic && got.length > specs.length) throw new UsageError(`unexpected argument "${got[specs.length]}"`);
  for (const [name, o] of Object.entries(options)) {
    if (o.required && parsed.values[name] === undefined) throw new UsageError(`--${name} is required`);
  }
  return { opts, args: got, help };
}

/** Finds the command the leading words name: the longest match wins (`user` vs `user create`). */
export function findCommand<T extends CommandShape>(commands: readonly T[], argv: string[]): { command: T; rest: string[] } | { group: string } | null {
  let best: T | undefined;
  for (const c of commands) {
    if (c.words.every((w, i) => argv[i] === w) && (!best || c.words.length > best.words.length)) best = c;
  }
  if (best) return { command: best, rest: argv.slice(best.words.length) };
  const first = argv[0];
  if (first && commands.some((c) => c.words[0] === first)) return { group: first };
  return null;
}

/** The one-line synopsis: `hmc org create NAME --reseller ID [options]`. */
export function synopsis(shape: CommandShape): string {
  const parts = ['hmc', ...shape.words];
  for (const a of shape.args ?? []) {
    if (a.endsWith('?')) parts.push(`[${a.slice(0, -1)}]`);
    else if (a.endsWith('...')) parts.push(`[${a.slice(0, -3)} ...]`);
    else parts.push(a);
  }
  for (const [name, o] of Object.entries(shape.options ?? {})) {
    if (o.required) parts.push(`--${name} ${o.value ?? 'X'}`);
  }
  parts.push('[options]');
  return parts.join(' ');
}

/** Full help of one command. */
export function commandHelp(shape: CommandShape): string {
  const rows = Object.entries(allOptions(shape)).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.value ?? 'X'}` : ''}`;
    return [flag, `${o.help}${o.multiple ? ' (repeatable)' : ''}`] as const;
  });
  const width = Math.max(...rows.map((r) => r[0].length));
  return [
    `usage: ${synopsis(shape)}`,
    '',
    shape.summary,
    '',
    'options:',
    ...rows.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`),
    '',
  ].join('\n');
}

/** The overview of every command (or of one group: `hmc org`). */
export function overview(commands: readonly CommandShape[], group?: string): string {
  const shown = group ? commands.filter((c) => c.words[0] === group) : commands;
  const rows = shown.map((c) => [c.words.join(' '), c.summary] as const);
  const width = Math.max(...rows.map((r) => r[0].length));
  return [
    group ? `usage: hmc ${group} <command> [options]` : 'usage: hmc <command> [options]',
    '',
    'commands:',
    ...rows.map(([w, s]) => `  ${w.padEnd(width)}  ${s}`),
    '',
    `Run "hmc ${group ?? '<command>'}${group ? ' <command>' : ''} --help" for a command's options.`,
    '',
  ].join('\n');
}

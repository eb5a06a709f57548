import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { commandHelp, findCommand, overview, parseCommand, synopsis } from './args.js';
import { makeCtx, type CommandSpec } from './command.js';
import { checkCommands } from './commands/check.js';
import { dataplaneCommands } from './commands/dataplane.js';
import { domainCommands } from './commands/domains.js';
import { groupCommands } from './commands/groups.js';
import { importCommands } from './commands/import.js';
import { mailCommands } from './commands/mail.js';
import { mailboxCommands } from './commands/mailboxes.js';
import { orgCommands } from './commands/orgs.js';
import { planCommands } from './commands/plans.js';
import { platformCommands } from './commands/platform.js';
import { requestCommands } from './commands/requests.js';
import { resellerCommands } from './commands/resellers.js';
import { resourceCommands } from './commands/resources.js';
import { tokenCommands } from './commands/tokens.js';
import { userCommands } from './commands/users.js';
import { CliError, EXIT_CLIENT, EXIT_OK, EXIT_SERVER, UsageError } from './errors.js';
import { processIo, type Io } from './io.js';
import { toJson } from './output.js';

/** Every command, in the order `hmc help` lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  ...platformCommands,
  ...tokenCommands,
  ...resellerCommands,
  ...orgCommands,
  ...domainCommands,
  ...userCommands,
  ...groupCommands,
  ...planCommands,
  ...mailboxCommands,
  ...mailCommands,
  ...importCommands,
  ...resourceCommands,
  ...checkCommands,
  ...dataplaneCommands,
  ...requestCommands,
];

const ENV_HELP = `environment:
  HMC_URL, HMC_TOKEN            server and API token of the API commands
  HMC_DATA_DIR, HMC_DATABASE_URL data directory; a postgres:// URL selects PostgreSQL
  HMC_TIMEOUT_MS                per-call HTTP timeout (default 300000)
exit codes: 0 ok, 1 refused (4xx, bad usage, failed rows), 2 server or network failure
`;

/** The `hmc` command. Returns the exit code; never calls process.exit (bin/hmc.js sets process.exitCode). */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const out = (s: string) => void io.stdout.write(s);
  const err = (s: string) => void io.stderr.write(s);
  const first = argv[0];
  if (first === undefined) {
    err(overview(COMMANDS) + ENV_HELP);
    return EXIT_CLIENT;
  }
  if (first === 'help' && argv.length > 1) return main([...argv.slice(1), '--help'], io);
  if (first === 'help' || first === '--help' || first === '-h') {
    out(overview(COMMANDS) + ENV_HELP);
    return EXIT_OK;
  }
  const found = findCommand(COMMANDS, argv);
  if (!found) {
    err(`hmc: unknown command "${first}"\n\n${overview(COMMANDS)}`);
    return EXIT_CLIENT;
  }
  if ('group' in found) {
    const wantsHelp = argv.length === 1 || argv.includes('--help') || argv.includes('-h');
    if (argv.length > 1 && !wantsHelp) err(`hmc: unknown command "${argv.slice(0, 2).join(' ')}"\n\n`);
    (argv.length > 1 && wantsHelp ? out : err)(overview(COMMANDS, found.group));
    return argv.length > 1 && wantsHelp ? EXIT_OK : EXIT_CLIENT;
  }
  const { command, rest } = found;
  let json = false;
  try {
    const parsed = parseCommand(command, rest);
    if (parsed.help) {
      out(commandHelp(command));
      return EXIT_OK;
    }
    const ctx = makeCtx(io, parsed.args, parsed.opts);
    json = ctx.json;
    return await command.run(ctx);
  } catch (e) {
    return report(io, command, e, json);
  }
}

/** Prints a failure and picks its exit code. */
function report(io: Io, command: CommandSpec, e: unknown, json: boolean): number {
  const err = (s: string) => void io.stderr.write(s);
  const name = `hmc ${command.words.join(' ')}`;
  if (e instanceof UsageError) {
    err(`${name}: ${e.message}\nusage: ${synopsis(command)}\n`);
    return e.exitCode;
  }
  if (e instanceof CliError) {
    // with --json the problem is the answer a script parses; the readable line still goes to stderr
    if (json && e.body !== undefined) io.stdout.write(toJson(e.body));
    err(`${name}: ${e.message}\n`);
    return e.exitCode;
  }
  // local commands (init, serve, migrate) surface the platform's own errors: HmcError carries code and kind
  const he = e as { message?: string; code?: unknown; kind?: unknown; stack?: string };
  const code = typeof he?.code === 'string' ? ` (code ${he.code})` : '';
  err(`${name}: ${he?.message ?? String(e)}${code}\n`);
  if (io.env.HMC_DEBUG && he?.stack) err(`${he.stack}\n`);
  const callerFault = ['invalid', 'not_found', 'conflict', 'forbidden', 'unauthorized', 'limit'].includes(String(he?.kind));
  return callerFault ? EXIT_CLIENT : EXIT_SERVER;
}

/** True when this file is the program (`node --import tsx src/cli/main.ts ...`), not an import. */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = EXIT_SERVER;
    },
  );
}

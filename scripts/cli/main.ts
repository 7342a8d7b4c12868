// The `containerpub` command: parse arguments (node:util parseArgs), dispatch to a command, turn
// errors into one line on stderr and an exit code (0 ok, 1 failure, 2 usage error, 3 auth).
// Runs as `npm run cli -- <command>`, or as `containerpub` through bin.js after `npm link`.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createContext, type Command, type Flags, type OptionSpec } from './commands/command.ts';
import { COMMANDS, GLOBAL_OPTIONS } from './commands/table.ts';
import { EXIT_CODES_HELP, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, isCliError, UsageError } from './errors.ts';
import { Output } from './output.ts';

function optionLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, o]) => [
    `${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` <${o.value}>` : ''}`,
    o.description,
  ]);
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
}

function generalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'containerpub — deploy, version and run functions on a ContainerPub platform',
    '',
    'Usage: containerpub <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options for every command:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    'Environment: CONTAINERPUB_URL (API URL), CONTAINERPUB_TOKEN (bearer token, overrides the saved login),',
    'XDG_CONFIG_HOME (where containerpub/credentials.json is kept; default ~/.config), NO_COLOR (no colour;',
    'colour is also off when the output is not a terminal), INIT_CWD (set by npm: paths are relative to it).',
    '',
    EXIT_CODES_HELP,
    '',
    'Example:',
    '  containerpub deploy ./hello && containerpub invoke hello --data \'{"name":"ada"}\'',
    'Run "containerpub <command> --help" for the options and examples of one command.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [
    `Usage: containerpub ${c.usage}`,
    '',
    `${c.summary[0].toUpperCase()}${c.summary.slice(1)}.`,
    ...(c.details ? ['', c.details] : []),
    '',
    'Options:',
    ...optionLines({ ...c.options, ...GLOBAL_OPTIONS }),
    '',
    c.examples.length === 1 ? 'Example:' : 'Examples:',
    ...c.examples.map((e) => `  ${/^[a-z]/.test(e) && !e.startsWith(`${c.name} `) && e !== c.name ? e : `containerpub ${e}`}`),
    '',
    EXIT_CODES_HELP,
  ].join('\n');
}

/** parseArgs' messages are long and name internals; say the same thing in a few words. */
function describeParseError(err: unknown): string {
  const e = err as { code?: string; message: string };
  const option = /'(-{1,2}[^' ]+)/.exec(e.message)?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option ? `"${option}"` : ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return option ? `${option} needs a value` : e.message;
    default:
      return e.message;
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = new Output(argv.includes('--json'), process.stdout, process.stderr, env);
  let command: Command | undefined;
  try {
    const [first, ...rest] = argv;
    if (first === undefined) {
      out.error(generalHelp());
      return EXIT_USAGE;
    }
    if (first === '--help' || first === '-h' || (first === 'help' && rest.length === 0)) {
      process.stdout.write(`${generalHelp()}\n`);
      return EXIT_OK;
    }
    if (first === 'help') {
      const target = COMMANDS.find((c) => c.name === rest[0]);
      if (!target) throw new UsageError(`unknown command "${rest[0]}"`);
      process.stdout.write(`${commandHelp(target)}\n`);
      return EXIT_OK;
    }
    command = COMMANDS.find((c) => c.name === first);
    if (!command) {
      throw new UsageError(first.startsWith('-') ? `a command comes first, not "${first}"` : `unknown command "${first}"`);
    }
    const options = { ...command.options, ...GLOBAL_OPTIONS };
    let parsed: { values: Flags; positionals: string[] };
    try {
      parsed = parseArgs({
        args: rest,
        options: options as ParseArgsConfig['options'],
        allowPositionals: true,
        strict: true,
      }) as { values: Flags; positionals: string[] };
    } catch (err) {
      throw new UsageError(describeParseError(err));
    }
    if (parsed.values.help) {
      process.stdout.write(`${commandHelp(command)}\n`);
      return EXIT_OK;
    }
    const { names, min, variadic } = command.positionals;
    if (parsed.positionals.length < min) throw new UsageError(`${command.name} needs <${names[parsed.positionals.length]}>`);
    if (!variadic && parsed.positionals.length > names.length) throw new UsageError(`unexpected argument "${parsed.positionals[names.length]}"`);
    return await command.run(createContext(out, parsed.values, parsed.positionals, env));
  } catch (err) {
    if (isCliError(err)) {
      const help = command ? `containerpub ${command.name} --help` : 'containerpub --help';
      const hint = err instanceof UsageError ? ` (see "${help}")` : '';
      out.error(`error: ${oneLine(err.message)}${hint}`);
      return err.exitCode;
    }
    // Not a condition we anticipated: still one line, with the stack on request.
    out.error(`error: ${oneLine((err as Error)?.message ?? String(err))}`);
    if (env.CONTAINERPUB_DEBUG) out.error((err as Error)?.stack ?? '');
    return EXIT_FAILURE;
  }
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

process.exitCode = await main(process.argv.slice(2));

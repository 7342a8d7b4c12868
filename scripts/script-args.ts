// Command-line parsing for the operator scripts (cleanup, migrate, users): a usage error exits 2
// with the usage, --help prints it and exits 0.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export function parseScriptArgs<O extends NonNullable<ParseArgsConfig['options']>>(
  usage: string,
  options: O,
  opts: { positionals?: boolean } = {},
) {
  let parsed;
  try {
    parsed = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
      allowPositionals: opts.positionals ?? false,
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return parsed;
}

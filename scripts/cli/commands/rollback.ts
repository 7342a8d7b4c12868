// rollback <name> --to <version>: make an earlier built version live again (no rebuild).
import { UsageError } from '../errors.ts';
import { intFlag, type Command } from './command.ts';

export const rollback: Command = {
  name: 'rollback',
  summary: 'make an earlier built version live again',
  usage: 'rollback <name> --to <version>',
  examples: [
    "rollback hello --to 3",
    "rollback hello --to v3 --json",
  ],
  options: {
    to: { type: 'string', value: 'version', description: 'the version to make live (required)' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const version = intFlag(ctx.flags, 'to');
    if (version === undefined) throw new UsageError('rollback needs --to <version>');
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    const before = fn.activeVersion;
    const result = await api.rollback(fn.id, version);
    ctx.out.data({ name, ...result, previousVersion: before });
    ctx.out.info(
      before === result.version
        ? `✔ ${name} v${result.version} is already live`
        : `✔ ${name} v${result.version} is live (was ${before === null ? 'no version' : `v${before}`})`,
    );
    return 0;
  },
};

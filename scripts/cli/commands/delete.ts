// delete <name>: the function, every version, its archives and images. Asks first on a terminal;
// elsewhere (a script, CI) it needs --yes, so a missing flag never deletes anything by surprise.
import { CliError, UsageError } from '../errors.ts';
import { ask, closePrompts } from '../prompt.ts';
import type { Command } from './command.ts';

export const deleteCommand: Command = {
  name: 'delete',
  summary: 'delete a function with all its versions',
  usage: 'delete <name> [--yes]',
  examples: ['delete hello', 'delete hello --yes --json'],
  details:
    'Deletes the function, every version, its archives and its images; its URL stops answering.\n' +
    'On a terminal it asks you to type the name; otherwise it refuses without --yes.',
  options: {
    yes: { type: 'boolean', short: 'y', description: 'delete without asking' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    if (ctx.flags.yes !== true) {
      if (!process.stdin.isTTY) throw new UsageError(`delete asks for confirmation, and stdin is not a terminal: pass --yes to delete "${name}"`);
      let answer: string;
      try {
        answer = await ask(`delete ${name} and its ${fn.latestVersion} version${fn.latestVersion === 1 ? '' : 's'}? type its name to confirm: `, '--yes');
      } finally {
        closePrompts();
      }
      if (answer !== name) throw new CliError(`not deleted: "${answer}" is not "${name}"`);
    }
    await api.deleteFunction(fn.id);
    ctx.out.data({ deleted: true, id: fn.id, name });
    ctx.out.info(`✔ ${name} deleted`);
    return 0;
  },
};

// ls: the user's functions.
import { formatAge, table } from '../format.ts';
import type { Command } from './command.ts';

export const ls: Command = {
  name: 'ls',
  summary: 'list your functions',
  usage: 'ls',
  examples: [
    "ls",
    "ls --json | jq -r '.functions[].name'",
  ],
  details: 'ACCESS is who may call the endpoint (see "containerpub access"); "containerpub url <name>" prints its URL.',
  options: {},
  positionals: { names: [], min: 0 },
  async run(ctx) {
    const functions = await ctx.api().listFunctions();
    ctx.out.data({ functions });
    if (ctx.out.json) return 0;
    if (functions.length === 0) {
      ctx.out.info('no functions yet: deploy one with "containerpub deploy <dir> --name <name>"');
      return 0;
    }
    ctx.out.info(
      table(
        ['NAME', 'LIVE VERSION', 'LATEST', 'STATUS', 'ACCESS', 'UPDATED'],
        functions.map((f) => [
          f.name,
          f.activeVersion === null ? '-' : `v${f.activeVersion}`,
          `v${f.latestVersion}`,
          f.status,
          f.access ?? '-',
          formatAge(f.updatedAt),
        ]),
      ),
    );
    return 0;
  },
};

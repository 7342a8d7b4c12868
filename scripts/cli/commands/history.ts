// history <name>: every version, newest first, the live one marked.
import { formatAge, formatBytes, shortSha, table } from '../format.ts';
import { intFlag, type Command } from './command.ts';

export const history: Command = {
  name: 'history',
  summary: "show a function's versions, newest first",
  usage: 'history <name> [--limit <n>]',
  details: 'The live version is marked with "*" and "live" in the LIVE column.',
  options: {
    limit: { type: 'string', value: 'n', description: 'show at most n versions (default 20)' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const limit = intFlag(ctx.flags, 'limit', { max: 500 }) ?? 20;
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    const { deployments, nextBefore } = await api.listDeployments(fn.id, { limit });
    ctx.out.data({ function: fn, deployments, nextBefore });
    if (ctx.out.json) return 0;
    ctx.out.info(
      table(
        ['VERSION', 'STATUS', 'LIVE', 'DEPLOYED', 'SIZE', 'SHA256'],
        deployments.map((d) => [
          `v${d.version}`,
          d.status,
          d.isActive ? 'live' : '',
          formatAge(d.deployedAt ?? d.createdAt),
          formatBytes(d.sizeBytes),
          shortSha(d.sha256),
        ]),
        { marks: deployments.map((d) => (d.isActive ? '*' : '')) },
      ),
    );
    const failed = deployments.filter((d) => d.status === 'failed' && d.error);
    for (const d of failed.slice(0, 3)) ctx.out.info(`v${d.version} failed: ${d.error}`);
    if (nextBefore !== null) ctx.out.info(`(older versions not shown: use --limit)`);
    return 0;
  },
};

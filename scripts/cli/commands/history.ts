// history <name>: every version, newest first, the live one marked, the candidate with its share,
// the tags that point at each, and the versions that await approval.
import { formatAge, formatBytes, formatRetry, shortSha, table } from '../format.ts';
import { intFlag, type Command } from './command.ts';

export const history: Command = {
  name: 'history',
  summary: "show a function's versions, newest first",
  usage: 'history <name> [--limit <n>]',
  examples: [
    "history hello",
    "history hello --limit 50 --json",
  ],
  details:
    'The live version is marked with "*" and "live" in the LIVE column; the candidate (see "containerpub traffic")\n' +
    'shows its share there, and a version built by "deploy --no-activate" shows "awaiting approval"\n' +
    '("containerpub approve" makes it live). TAGS: the tags that point at the version.',
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
    const candidate = fn.traffic.find((s) => s.role === 'candidate');
    const role = (d: (typeof deployments)[number]) =>
      d.isActive
        ? 'live'
        : candidate?.deploymentId === d.id
          ? `candidate ${candidate.percent}%`
          : d.awaitingApproval
            ? 'awaiting approval'
            : '';
    ctx.out.info(
      table(
        ['VERSION', 'STATUS', 'LIVE', 'TAGS', 'DEPLOYED', 'SIZE', 'SHA256'],
        deployments.map((d) => [
          `v${d.version}`,
          d.status,
          role(d),
          d.tags.join(','),
          formatAge(d.deployedAt ?? d.createdAt),
          formatBytes(d.sizeBytes),
          shortSha(d.sha256),
        ]),
        { marks: deployments.map((d) => (d.isActive ? '*' : '')) },
      ),
    );
    const failed = deployments.filter((d) => d.status === 'failed' && d.error);
    for (const d of failed.slice(0, 3)) ctx.out.info(`v${d.version} failed: ${d.error}`);
    for (const d of deployments) {
      const retry = d.status === 'building' ? formatRetry(d) : null;
      if (retry) ctx.out.info(`v${d.version} building, ${retry}`);
    }
    if (nextBefore !== null) ctx.out.info(`(older versions not shown: use --limit)`);
    return 0;
  },
};

// instances <name>: the function's warm instances, as the API process that answered sees them.
import { ApiError, CliError } from '../errors.ts';
import { formatAge, table } from '../format.ts';
import type { Command } from './command.ts';

export const instances: Command = {
  name: 'instances',
  summary: "show a function's warm instances",
  usage: 'instances <name>',
  examples: [
    "instances hello",
    "instances hello --json",
  ],
  details:
    'Instances start on an invoke or when a version goes live, and stop once idle for FUNCTION_IDLE_MS.\n' +
    'Each API process keeps its own: with several behind a load balancer, this shows the one that answered.',
  options: {},
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    let list;
    try {
      list = await api.listInstances(fn.id);
    } catch (err) {
      // The function was just found, so a route-level 404 means this API does not have the route:
      // say that rather than echo "no route for GET …".
      if (err instanceof ApiError && err.code === 'not_found') {
        throw new CliError(`the API at ${api.baseUrl} does not list instances (it is older than this CLI, or runs no functions)`);
      }
      throw err;
    }
    ctx.out.data({ instances: list });
    if (ctx.out.json) return 0;
    if (list.length === 0) {
      ctx.out.info(
        fn.activeVersion === null
          ? `no warm instances of ${name} (it has no live version yet)`
          : `no warm instances of ${name}: the next invoke starts one`,
      );
      return 0;
    }
    ctx.out.info(
      table(
        ['ID', 'VERSION', 'STATE', 'STARTED', 'LAST USED', 'INVOCATIONS'],
        list.map((i) => [i.id, `v${i.version}`, i.state, formatAge(i.startedAt), formatAge(i.lastUsedAt), String(i.invocations)]),
      ),
    );
    return 0;
  },
};

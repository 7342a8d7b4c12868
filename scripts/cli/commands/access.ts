// access <name> public|key|private: who may call the function's endpoint.
import { ACCESS_MODES, type FunctionAccess } from '../api-client.ts';
import { describeAccess, endpointUrls } from '../endpoint.ts';
import { UsageError } from '../errors.ts';
import type { Command } from './command.ts';

export const access: Command = {
  name: 'access',
  summary: "set who may call a function's endpoint",
  usage: 'access <name> public|key|private',
  examples: [
    "access hello public",
    "access hello key",
    "access hello private --json",
  ],
  details:
    'private (the default): only your API token (Authorization: Bearer cp_…).\n' +
    'key: a function key (see "containerpub keys") in X-Function-Key or Authorization: Bearer; your token works too.\n' +
    'public: anyone, without credentials.\n' +
    'Prints the new access and the URL.',
  options: {},
  positionals: { names: ['name', 'public|key|private'], min: 2 },
  async run(ctx) {
    const [name, mode] = ctx.positionals;
    if (!(ACCESS_MODES as readonly string[]).includes(mode)) {
      throw new UsageError(`unknown access "${mode}" (public, key or private)`);
    }
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    const updated = await api.setAccess(fn.id, mode as FunctionAccess);
    const urls = endpointUrls(updated);
    ctx.out.data({ name, access: updated.access, previousAccess: fn.access, ...urls });
    if (ctx.out.json) return 0;
    const was = fn.access === updated.access ? 'unchanged' : `was ${fn.access}`;
    ctx.out.info(`✔ ${name} is ${updated.access} (${was}): ${describeAccess(updated.access, name)}`);
    ctx.out.info(`  ${urls.url}`);
    if (urls.hostUrl) ctx.out.info(`  ${urls.hostUrl}`);
    return 0;
  },
};

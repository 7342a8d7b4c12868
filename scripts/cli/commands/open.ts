// open [name]: the dashboard's URL, for the platform or one function, alone on stdout (pipe it to
// xdg-open or open(1)); nothing is launched.
import type { Command } from './command.ts';

export const open: Command = {
  name: 'open',
  summary: "print the dashboard's URL, for the platform or a function",
  usage: 'open [name]',
  examples: ['open', 'open hello', 'xdg-open "$(containerpub open hello)"'],
  details:
    'Prints {url}/dashboard, or {url}/dashboard/functions/{name} for one of your functions ({url}: the platform\'s\n' +
    'public URL, from the function\'s endpoint; the API URL for the platform).',
  options: {},
  positionals: { names: ['name'], min: 0 },
  async run(ctx) {
    const [name] = ctx.positionals;
    let base = ctx.connection().url;
    let functionId: string | undefined;
    if (name !== undefined) {
      const fn = await ctx.api().functionNamed(name);
      functionId = fn.id;
      // the endpoint is {PUBLIC_URL}/fn/{handle}/{name}: the part before /fn/ is the platform's public URL
      const at = fn.url.lastIndexOf('/fn/');
      if (at > 0) base = fn.url.slice(0, at);
    }
    const url = `${base}/dashboard${name === undefined ? '' : `/functions/${encodeURIComponent(name)}`}`;
    ctx.out.data({ url, ...(name === undefined ? {} : { name, functionId }) });
    if (!ctx.out.json) process.stdout.write(`${url}\n`);
    return 0;
  },
};

// url <name>: the function's endpoint URL, alone on stdout so `URL=$(containerpub url hello)` works.
import { endpointUrls } from '../endpoint.ts';
import type { Command } from './command.ts';

export const url: Command = {
  name: 'url',
  summary: "print a function's endpoint URL",
  usage: 'url <name>',
  examples: [
    "url hello",
    "curl \"$(containerpub url hello)\"",
  ],
  details:
    'Prints {PUBLIC_URL}/fn/{handle}/{name}; any path and query after it reach the function.\n' +
    'When the platform sets FUNCTIONS_DOMAIN, the host form {name}--{handle}.{domain} follows on a second line.\n' +
    'Who may call it is set with "containerpub access"; /fn/{handle}/{name}@v{N}/ serves built version N\n' +
    '(for you and key holders; public callers get the live version only).',
  options: {},
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const fn = await ctx.api().functionNamed(name);
    const urls = endpointUrls(fn);
    ctx.out.data(urls);
    if (ctx.out.json) return 0;
    ctx.out.info(urls.url);
    if (urls.hostUrl) ctx.out.info(urls.hostUrl);
    return 0;
  },
};

// invoke <name> [--data JSON | --file F] [--version N | --tag T]: run the live (or a named built, or a tagged) version.
import fs from 'node:fs';
import { ApiError, CliError, UsageError } from '../errors.ts';
import { tagNameProblem } from '../../../shared/domain/tag-name.ts';
import { intFlag, stringFlag, type Command } from './command.ts';

function readEvent(data: string | undefined, file: string | undefined): unknown {
  if (data !== undefined && file !== undefined) throw new UsageError('give the event with --data or --file, not both');
  if (data !== undefined) {
    try {
      return JSON.parse(data);
    } catch (err) {
      throw new UsageError(`--data is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(code === 'ENOENT' ? `no such file: ${file}` : `cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  return {};
}

export const invoke: Command = {
  name: 'invoke',
  summary: 'run a function with a JSON event and print its result',
  usage: 'invoke <name> [--data <json> | --file <path>] [--version <n> | --tag <tag>]',
  examples: [
    "invoke hello --data '{\"name\":\"ada\"}'",
    "invoke hello --file event.json --version 3 --json",
    'invoke hello --tag beta',
  ],
  details: 'Prints the result as JSON (with --json, the whole response: result, version, requestId, durationMs).',
  options: {
    data: { type: 'string', value: 'json', description: 'the event, as JSON (default {})' },
    file: { type: 'string', value: 'path', description: 'read the event from a JSON file' },
    version: { type: 'string', value: 'n', description: 'run this built version instead of the live one' },
    tag: { type: 'string', value: 'tag', description: 'run the version this tag points at (see "containerpub tag")' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const file = stringFlag(ctx.flags, 'file');
    const event = readEvent(stringFlag(ctx.flags, 'data'), file === undefined ? undefined : ctx.resolvePath(file));
    const version = intFlag(ctx.flags, 'version');
    const tag = stringFlag(ctx.flags, 'tag');
    if (version !== undefined && tag !== undefined) throw new UsageError('give --version or --tag, not both');
    const tagProblem = tag === undefined ? null : tagNameProblem(tag);
    if (tagProblem) throw new UsageError(`invalid tag "${tag}": ${tagProblem}`);
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    let res;
    try {
      res = await api.invoke(fn.id, event, { version, tag });
    } catch (err) {
      if (err instanceof ApiError && (err.code === 'function_error' || err.code === 'function_timeout')) {
        const v = typeof err.details?.version === 'number' ? ` v${err.details.version}` : '';
        const what = err.code === 'function_timeout' ? 'timed out' : 'failed';
        throw new CliError(`${name}${v} ${what}: ${err.message}`);
      }
      throw err;
    }
    if (ctx.out.json) {
      ctx.out.data(res);
    } else {
      ctx.out.info(JSON.stringify(res.result, null, 2) ?? 'undefined');
      ctx.out.error(`${name} v${res.version} · ${res.durationMs} ms · request ${res.requestId}`);
    }
    return 0;
  },
};

// watch <dir> --name <name>: redeploy on every save until Ctrl-C.
import { DEFAULT_MAX_BYTES, requireDirectory } from '../pack.ts';
import { readProject } from '../project.ts';
import { DirectoryWatcher } from '../watch.ts';
import { intFlag, type Command } from './command.ts';
import { deployOptions, functionNameFlag } from './deploy.ts';

export const watchCommand: Command = {
  name: 'watch',
  summary: 'redeploy a directory on every save',
  usage: 'watch <dir> [--name <name>] [options]',
  examples: [
    "watch ./hello",
    "watch . --name hello --json",
  ],
  details:
    'Deploys <dir> now (unless the latest version already has exactly these files), then again after every save:\n' +
    'saves are debounced (300 ms), deploys never overlap (the latest change is queued), and a save that does\n' +
    'not change the packed archive deploys nothing. Errors are printed and watching goes on. Ctrl-C stops.\n' +
    'containerpub.json is read on every cycle: its settings go with each deploy, and a save that changes only\n' +
    'them makes a configuration change of the live version (no rebuild).\n' +
    'With --json, stdout carries one JSON object per line for each deploy, configuration change, unchanged save or error.',
  options: deployOptions,
  positionals: { names: ['dir'], min: 1 },
  async run(ctx) {
    const dir = ctx.resolvePath(ctx.positionals[0]!);
    const name = functionNameFlag(ctx.flags, 'watch', await readProject(requireDirectory(dir)), dir);
    const maxBytes = intFlag(ctx.flags, 'max-bytes') ?? DEFAULT_MAX_BYTES;
    const timeoutS = intFlag(ctx.flags, 'timeout') ?? 600;
    const watcher = new DirectoryWatcher(ctx.api(), { dir, name, out: ctx.out, maxBytes, buildTimeoutMs: timeoutS * 1000 });
    // Exit at once, whatever is in flight: the server side of a deploy needs nothing from us.
    const stop = () => {
      ctx.out.info(watcher.describeStop());
      void watcher.close();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await watcher.start();
    return new Promise<number>(() => {}); // runs until a signal
  },
};

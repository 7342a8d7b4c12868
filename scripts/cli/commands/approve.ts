// approve <name> <version>: a version that was built without going live (deploy --no-activate, or a
// function that requires approval) goes live; the event log records who approved it.
import { versionArg, type Command } from './command.ts';

export const approve: Command = {
  name: 'approve',
  summary: 'make a version that awaits approval live',
  usage: 'approve <name> <version>',
  examples: [
    "approve hello 4",
    "approve hello v4 --json",
  ],
  details:
    'For a version built by "deploy --no-activate" (or under requireApproval): it becomes the live version,\n' +
    'and the event log records you as its approver. "containerpub history" marks the versions awaiting approval.\n' +
    'To send it only part of the traffic first, use "containerpub traffic <name> --to <version> --percent <p>".',
  options: {},
  positionals: { names: ['name', 'version'], min: 2 },
  async run(ctx) {
    const [name, rawVersion] = ctx.positionals;
    const version = versionArg(rawVersion!);
    const api = ctx.api();
    const fn = await api.functionNamed(name!);
    const before = fn.activeVersion;
    const result = await api.approve(fn.id, version);
    ctx.out.data({ name, ...result, previousVersion: before });
    const was = before === null ? 'no version' : `v${before}`;
    if (result.status === 'building') {
      ctx.out.info(`✔ ${name} v${result.version} approved; it was archived, so it is rebuilt first and goes live once built (${was} live meanwhile)`);
    } else if (before === result.version) ctx.out.info(`✔ ${name} v${result.version} is already live`);
    else ctx.out.info(`✔ ${name} v${result.version} approved and live (was ${was})`);
    return 0;
  },
};

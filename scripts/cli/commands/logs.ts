// logs <name>: the function's event log (deploys, builds, activations), then what recent
// invocations printed.
import type { EventEntry, Invocation } from '../api-client.ts';
import { formatTime } from '../format.ts';
import type { Output } from '../output.ts';
import { intFlag, type Command } from './command.ts';

function printEvents(out: Output, events: EventEntry[]): void {
  if (events.length === 0) return out.info('(no events)');
  // The API answers newest first; a log reads oldest first.
  for (const e of [...events].reverse()) {
    out.info(`${formatTime(e.createdAt)}  ${e.version === null ? '  ' : `v${e.version}`}  ${e.event.padEnd(18)} ${e.message}`);
  }
}

function printInvocations(out: Output, invocations: Invocation[]): void {
  if (invocations.length === 0) return out.info('(no invocations)');
  for (const inv of [...invocations].reverse()) {
    out.info(`── ${formatTime(inv.createdAt)}  v${inv.version}  ${inv.outcome}  ${inv.durationMs} ms  request ${inv.requestId}`);
    const logs = (inv.logs ?? '').replace(/\s+$/, '');
    if (logs) for (const line of logs.split('\n')) out.info(`   ${line}`);
    if (inv.error) out.info(`   error: ${inv.error}`);
  }
}

export const logs: Command = {
  name: 'logs',
  summary: "show a function's event log and recent invocation output",
  usage: 'logs <name> [--version <n>] [--invocations | --events] [--limit <n>]',
  options: {
    version: { type: 'string', value: 'n', description: 'only this version' },
    invocations: { type: 'boolean', description: 'only what recent invocations printed' },
    events: { type: 'boolean', description: 'only the event log (deploys, builds, activations, rollbacks)' },
    limit: { type: 'string', value: 'n', description: 'at most n events (default 50) and n invocations (default 10)' },
  },
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const version = intFlag(ctx.flags, 'version');
    const limit = intFlag(ctx.flags, 'limit', { max: 200 });
    const onlyInvocations = ctx.flags.invocations === true;
    const onlyEvents = ctx.flags.events === true;
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    const [events, invocations] = await Promise.all([
      onlyInvocations ? Promise.resolve(null) : api.listEvents(fn.id, { limit: limit ?? 50, version }),
      onlyEvents ? Promise.resolve(null) : api.listInvocations(fn.id, { limit: limit ?? 10, version }),
    ]);
    ctx.out.data({ ...(events ? { logs: events } : {}), ...(invocations ? { invocations } : {}) });
    if (ctx.out.json) return 0;
    if (events && invocations) ctx.out.info(`Events${version ? ` (v${version})` : ''}:`);
    if (events) printEvents(ctx.out, events);
    if (events && invocations) ctx.out.info(`\nRecent invocations${version ? ` (v${version})` : ''}:`);
    if (invocations) printInvocations(ctx.out, invocations);
    return 0;
  },
};

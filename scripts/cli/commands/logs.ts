// logs <name>: the function's event log (deploys, builds, activations), then what recent
// invocations printed. --follow: then everything new as it happens, through the event stream,
// until Ctrl-C (exit 0).
import type { EventEntry, Invocation } from '../api-client.ts';
import { formatTime } from '../format.ts';
import type { Output } from '../output.ts';
import { followEvents, StreamUnsupported, type StreamMessage } from '../event-stream.ts';
import { CliError, UsageError } from '../errors.ts';
import { intFlag, stringFlag, type Command, type CommandContext } from './command.ts';

function printEvents(out: Output, events: EventEntry[]): void {
  if (events.length === 0) return out.info('(no events)');
  // The API answers newest first; a log reads oldest first.
  for (const e of [...events].reverse()) {
    out.info(`${formatTime(e.createdAt)}  ${e.version === null ? '  ' : `v${e.version}`}  ${e.event.padEnd(18)} ${e.message}`);
  }
}

function printEvent(out: Output, e: EventEntry): void {
  out.info(`${formatTime(e.createdAt)}  ${e.version === null ? '  ' : `v${e.version}`}  ${e.event.padEnd(18)} ${e.message}`);
}

function printInvocation(out: Output, inv: Invocation): void {
  out.info(`── ${formatTime(inv.createdAt)}  v${inv.version}  ${inv.outcome}  ${inv.durationMs} ms  request ${inv.requestId}`);
  const logs = (inv.logs ?? '').replace(/\s+$/, '');
  if (logs) for (const line of logs.split('\n')) out.info(`   ${line}`);
  if (inv.error) out.info(`   error: ${inv.error}`);
}

function printInvocations(out: Output, invocations: Invocation[]): void {
  if (invocations.length === 0) return out.info('(no invocations)');
  for (const inv of [...invocations].reverse()) printInvocation(out, inv);
}

/**
 * Prints what the stream sends until Ctrl-C. The recent history is printed first (unless --json);
 * the stream is opened before it is read, so what happens in between is shown once, not lost.
 */
async function follow(ctx: CommandContext, fnId: string, name: string, filter: { version?: number; events: boolean; invocations: boolean }): Promise<number> {
  const api = ctx.api();
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let opened!: () => void;
  const open = new Promise<void>((resolve) => (opened = resolve));
  let dropped = false;
  const stream = followEvents(api, fnId, {
    since: stringFlag(ctx.flags, 'since'),
    signal: abort.signal,
    onOpen: () => {
      if (dropped) ctx.out.error('(reconnected)');
      dropped = false;
      opened();
    },
    onDrop: (err) => {
      if (!dropped) ctx.out.error(`(connection lost: ${(err as Error).message ?? err}; reconnecting)`);
      dropped = true;
    },
  });
  const first = stream.next();
  first.catch(() => {});
  let shownEvent = 0;
  let shownInvocation = 0;
  try {
    await Promise.race([open, first]);
    if (!ctx.out.json && stringFlag(ctx.flags, 'since') === undefined) {
      const [events, invocations] = await Promise.all([
        filter.events ? api.listEvents(fnId, { limit: 20, version: filter.version }) : Promise.resolve([]),
        filter.invocations ? api.listInvocations(fnId, { limit: 5, version: filter.version }) : Promise.resolve([]),
      ]);
      for (const e of [...events].reverse()) printEvent(ctx.out, e);
      for (const inv of [...invocations].reverse()) printInvocation(ctx.out, inv);
      shownEvent = Math.max(0, ...events.map((e) => e.id));
      shownInvocation = Math.max(0, ...invocations.map((i) => i.id));
      ctx.out.error(`following ${name} (Ctrl-C to stop)`);
    }
    for (let r = await first; !r.done; r = await stream.next()) {
      const m: StreamMessage = r.value;
      const version = (m.data as { version?: number | null }).version;
      if (filter.version !== undefined && version !== filter.version) continue;
      if (m.event === 'invocation') {
        const inv = m.data as Invocation;
        if (!filter.invocations || inv.id <= shownInvocation) continue;
        ctx.out.event(m);
        if (!ctx.out.json) printInvocation(ctx.out, inv);
      } else if (m.event === 'build_log') {
        if (!filter.events) continue;
        ctx.out.event(m);
        if (!ctx.out.json) for (const line of (m.data as { lines: string[] }).lines) ctx.out.info(`  │ ${line}`);
      } else {
        const e = m.data as EventEntry;
        if (!filter.events || (typeof e.id === 'number' && e.id <= shownEvent)) continue;
        ctx.out.event(m);
        if (!ctx.out.json) printEvent(ctx.out, e);
      }
    }
    return 0;
  } catch (err) {
    if (abort.signal.aborted) return 0;
    if (err instanceof StreamUnsupported) throw new CliError(`the API at ${api.baseUrl} has no event stream (an older version?): "containerpub logs ${name}" without --follow works`);
    throw err;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    abort.abort();
  }
}

export const logs: Command = {
  name: 'logs',
  summary: "show a function's event log and recent invocation output",
  usage: 'logs <name> [--version <n>] [--invocations | --events] [--limit <n>] [--follow [--since <id>]]',
  examples: [
    "logs hello",
    "logs hello --follow",
    "logs hello --invocations --limit 5 --json",
  ],
  options: {
    version: { type: 'string', value: 'n', description: 'only this version' },
    invocations: { type: 'boolean', description: 'only what recent invocations printed' },
    events: { type: 'boolean', description: 'only the event log (deploys, builds, activations, rollbacks)' },
    limit: { type: 'string', value: 'n', description: 'at most n events (default 50) and n invocations (default 10)' },
    follow: { type: 'boolean', short: 'f', description: 'then print what happens as it happens (build logs too), until Ctrl-C' },
    since: { type: 'string', value: 'id', description: 'with --follow: start after this event id (as --json prints them) instead of now' },
  },
  details:
    '--follow reads the event stream (GET /api/functions/{id}/events/stream): events, build log lines and\n' +
    'invocations with their output, as they happen; it reconnects by itself after a dropped connection, from\n' +
    'the last event it received. Ctrl-C stops it (exit 0). With --json, stdout carries one JSON object per\n' +
    'line: {id, event, data}, data being what the API sends (its "id" can be given to --since).',
  positionals: { names: ['name'], min: 1 },
  async run(ctx) {
    const [name] = ctx.positionals;
    const version = intFlag(ctx.flags, 'version');
    const limit = intFlag(ctx.flags, 'limit', { max: 200 });
    const onlyInvocations = ctx.flags.invocations === true;
    const onlyEvents = ctx.flags.events === true;
    const api = ctx.api();
    const fn = await api.functionNamed(name);
    if (ctx.flags.follow === true) return follow(ctx, fn.id, name!, { version, events: !onlyInvocations, invocations: !onlyEvents });
    if (stringFlag(ctx.flags, 'since') !== undefined) throw new UsageError('--since goes with --follow');
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

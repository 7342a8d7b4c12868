// The dashboard's event stream listens by event name (an SSE message reaches only the listeners of
// its name), so api/ui/stream.js lists the names the stream sends. This keeps that list equal to
// the platform's own: an event added to shared/domain/events.ts without it would never reach the page.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../support/cli.ts';

function functionEvents(): string[] {
  const source = fs.readFileSync(path.join(repoRoot, 'shared/domain/events.ts'), 'utf8');
  const union = /export type FunctionEvent =([\s\S]*?);/.exec(source)?.[1] ?? '';
  return [...union.matchAll(/\|\s*'([a-z_]+)'/g)].map((m) => m[1]!);
}

function dashboardNames(): string[] {
  const source = fs.readFileSync(path.join(repoRoot, 'api/ui/stream.js'), 'utf8');
  const list = /const EVENT_NAMES = \[([\s\S]*?)\];/.exec(source)?.[1] ?? '';
  return [...list.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!);
}

test('the dashboard listens for every event the stream sends', () => {
  const events = functionEvents();
  assert.ok(events.length > 20, `read the FunctionEvent union (${events.length} names)`);
  const expected = [...events, 'invocation', 'build_log'].sort();
  assert.equal([...dashboardNames()].sort(), expected);
});

test.run();

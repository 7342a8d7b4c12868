// function-snapshots.ts: what a process remembers of the function rows its deploy groups wrote is
// bounded (a number of snapshots and their weight, configurations included), and a function in a
// group in progress is not planned from by another group.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FunctionSnapshots, type FunctionSnapshot } from '../../shared/domain/function-snapshots.ts';
import type { FunctionRow } from '../../shared/domain/model.ts';

const snapshot = (id: string, config = '{}'): FunctionSnapshot => ({
  row: { id, last_version: 1, intent_seq: 1 } as unknown as FunctionRow,
  rowVersion: '100',
  latestConfig: config,
});

test('bounded by number: the least recently written go first', () => {
  const s = new FunctionSnapshots({ max: 3, maxBytes: 1 << 30 });
  for (const k of ['a', 'b', 'c']) s.remember(k, snapshot(k));
  s.remember('a', snapshot('a')); // written again: now the most recent
  s.remember('d', snapshot('d'));
  assert.is(s.size.snapshots, 3);
  assert.is(s.take(['b']), null, 'b, the oldest write, is gone');
  for (const k of ['a', 'c', 'd']) {
    assert.ok(s.take([k]), k);
    s.release([k]);
  }
});

test('bounded by weight: large configurations push the oldest out, and one heavier than the room is not kept', () => {
  const s = new FunctionSnapshots({ max: 100, maxBytes: 11_000 });
  s.remember('small', snapshot('small'));
  s.remember('big-1', snapshot('big-1', 'x'.repeat(4_000)));
  s.remember('big-2', snapshot('big-2', 'x'.repeat(4_000)));
  assert.is(s.size.snapshots, 2, 'the first written went');
  assert.ok(s.size.bytes <= 11_000, `weight ${s.size.bytes}`);
  assert.is(s.take(['small']), null);
  s.remember('huge', snapshot('huge', 'x'.repeat(20_000)));
  assert.is(s.take(['huge']), null, 'heavier than all the room: not kept');
  assert.is(s.size.snapshots, 2, 'and it pushed nothing out');
  s.forget(['big-1', 'big-2']);
  assert.equal(s.size, { snapshots: 0, bytes: 0 });
});

test('a function in a group in progress is not planned from by another until released', () => {
  const s = new FunctionSnapshots();
  s.remember('a', snapshot('a'));
  s.remember('b', snapshot('b'));
  const taken = s.take(['a', 'b']);
  assert.equal(taken?.map((t) => t.row.id), ['a', 'b']);
  assert.is(s.take(['b']), null, 'b is in progress');
  s.hold(['a']); // a group reading first, too
  s.release(['a', 'b']);
  assert.ok(s.take(['b']), 'b released');
  s.release(['b']);
  assert.is(s.take(['a']), null, 'a is still held by the other group');
  s.release(['a']);
  assert.ok(s.take(['a']));
  assert.is(s.take(['a', 'unknown']), null, 'one unknown: none taken');
});

test.run();

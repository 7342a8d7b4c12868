// Build logs are bounded: the head and the tail are kept within the limit, one line says what was
// cut, and a single huge line is cut too.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BuildLog } from '../../runner/build-log.ts';

const bytes = (s: string) => Buffer.byteLength(s);

test('under the limit: every line, in order, nothing said about cuts', () => {
  const log = new BuildLog(4096);
  log.line('first');
  log.line('second\r\nthird\n\n');
  assert.is(log.text(), 'first\nsecond\nthird');
});

test('over the limit: the head and the tail stay, the middle is counted in one line', () => {
  const max = 4096;
  const log = new BuildLog(max);
  const lines = Array.from({ length: 2000 }, (_, i) => `step ${i} ${'x'.repeat(40)}`);
  for (const l of lines) log.line(l);
  const text = log.text();
  assert.ok(bytes(text) <= max, `${bytes(text)} bytes`);
  const out = text.split('\n');
  assert.is(out[0], lines[0], 'the head starts with the first line');
  assert.is(out.at(-1), lines.at(-1), 'the tail ends with the last line');
  const marker = out.findIndex((l) => l.startsWith('[…'));
  const m = /^\[… (\d+) bytes \((\d+) lines\) of build output cut …\]$/.exec(out[marker]!);
  assert.ok(m, out[marker]);
  const kept = out.filter((_, i) => i !== marker);
  // what is kept, plus what the marker says was cut, is everything
  assert.is(kept.length + Number(m![2]), lines.length);
  const keptBytes = kept.reduce((n, l) => n + bytes(l) + 1, 0);
  assert.is(keptBytes + Number(m![1]), lines.reduce((n, l) => n + bytes(l) + 1, 0));
  // the kept lines are a prefix and a suffix of the output, in order
  const head = out.slice(0, marker);
  const tail = out.slice(marker + 1);
  assert.equal(head, lines.slice(0, head.length));
  assert.equal(tail, lines.slice(lines.length - tail.length));
  assert.ok(head.length > 5 && tail.length > 5, `${head.length} head and ${tail.length} tail lines`);
});

test('a single huge line is cut, says so, and the log stays within the limit', () => {
  const max = 2048;
  const log = new BuildLog(max);
  log.line('start');
  log.line('é'.repeat(1_000_000)); // 2 MB in one line, multi-byte characters
  log.line('the error at the end');
  const text = log.text();
  assert.ok(bytes(text) <= max, `${bytes(text)} bytes`);
  assert.ok(text.startsWith('start\n'));
  assert.ok(text.endsWith('the error at the end'));
  assert.match(text, /\[… 2000000 bytes in this line, cut\]/);
  assert.not.match(text, /\uFFFD/, 'no character cut in half');
});

test('the budget holds for any mix, even at the smallest limit', () => {
  for (const max of [1024, 3000, 65536]) {
    const log = new BuildLog(max);
    for (let i = 0; i < 5000; i++) log.line(i % 97 === 0 ? 'y'.repeat(5000) : `line ${i}`);
    assert.ok(bytes(log.text()) <= max, `limit ${max}: ${bytes(log.text())} bytes`);
    assert.match(log.text(), /line 4999$/);
  }
});

test.run();

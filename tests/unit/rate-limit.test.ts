// The sign-up/login limiter's buckets, with the clock passed in: the rate, Retry-After, and a
// bounded memory under a flood of keys.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RateLimiter } from '../../api/http/rate-limit.ts';

test('perMinute attempts at once, then one more every 60/perMinute seconds; Retry-After says when', () => {
  const limiter = new RateLimiter(10);
  for (let i = 0; i < 10; i++) {
    assert.is(limiter.waitSeconds('a', 0), 0, `attempt ${i + 1}`);
    limiter.take('a', 0);
  }
  assert.is(limiter.waitSeconds('a', 0), 6, 'one token comes back every 6 s');
  assert.is(limiter.waitSeconds('a', 5_000), 1);
  assert.is(limiter.waitSeconds('a', 6_000), 0);
  assert.is(limiter.waitSeconds('b', 0), 0, 'other keys are not affected');
  // a full minute later the whole burst is back, and no more than that
  limiter.take('a', 6_000);
  for (let i = 0; i < 10; i++) limiter.take('a', 120_000);
  assert.ok(limiter.waitSeconds('a', 120_000) > 0);
});

test('a flood of distinct keys keeps the map at its bound, dropping the keys left alone longest', () => {
  const limiter = new RateLimiter(2, 1_000);
  limiter.take('victim', 0);
  limiter.take('victim', 0);
  for (let i = 0; i < 50_000; i++) {
    limiter.take(`random-${i}@example.com`, i);
    if (i % 500 === 0) limiter.take('victim', i); // attacked all along: stays remembered
  }
  assert.is(limiter.size, 1_000);
  assert.ok(limiter.waitSeconds('victim', 50_000) > 0, 'the key in use was not evicted');
  assert.is(limiter.waitSeconds('random-0@example.com', 50_000), 0);
});

test.run();

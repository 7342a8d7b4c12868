// Which version a request lands on: the split's arithmetic, stickiness, and traffic keys.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { LiveDeployment, LiveRoute } from '../../shared/domain/live-routes.ts';
import { chooseDeployment, needsTrafficKey, normalizeTrafficKey, stickyBucket, trafficKeyFromCookie } from '../../shared/domain/traffic-choice.ts';

const dep = (version: number): LiveDeployment => ({ deploymentId: `d${version}`, version, imageTag: null, status: 'active', driver: 'process', config: {} });
const route = (percent: number | null, sticky = false): LiveRoute => ({
  functionId: 'f',
  userId: 'u',
  access: 'private',
  live: dep(1),
  candidate: percent === null ? null : { ...dep(2), percent },
  sticky,
  tags: new Map(),
});

test('no candidate, 0 % and 100 %: no dice are thrown', () => {
  const never = () => {
    throw new Error('random used');
  };
  assert.is(chooseDeployment(route(null), null, never)?.deployment.version, 1);
  assert.is(chooseDeployment(route(0), null, never)?.deployment.version, 1);
  assert.is(chooseDeployment(route(100), null, never)?.deployment.version, 2);
  assert.is(chooseDeployment({ ...route(50), live: null }, null, never), null);
});

test('random split: the candidate takes values below its share', () => {
  assert.is(chooseDeployment(route(10), null, () => 0.0999)?.role, 'candidate');
  assert.is(chooseDeployment(route(10), null, () => 0.1)?.role, 'live');
  let onCandidate = 0;
  for (let i = 0; i < 20_000; i++) if (chooseDeployment(route(25), null)?.role === 'candidate') onCandidate++;
  assert.ok(onCandidate > 4_500 && onCandidate < 5_500, `${onCandidate} of 20000 at 25 %`);
});

test('sticky: a key always lands on the same version; raising the share only moves keys to the candidate', () => {
  const keys = Array.from({ length: 2000 }, (_, i) => `key-${i}`);
  const at = (percent: number) => keys.map((k) => chooseDeployment(route(percent, true), k)!.deployment.version);
  const ten = at(10);
  assert.equal(at(10), ten, 'same split, same answers');
  const share = ten.filter((v) => v === 2).length / keys.length;
  assert.ok(share > 0.07 && share < 0.13, `share ${share}`);
  const fifty = at(50);
  for (let i = 0; i < keys.length; i++) if (ten[i] === 2) assert.is(fifty[i], 2, `key ${i} moved back to live`);
  assert.is(stickyBucket('a', 'd2'), stickyBucket('a', 'd2'));
  assert.ok(stickyBucket('a', 'd2') >= 0 && stickyBucket('a', 'd2') < 10_000);
  // a key only matters when the split is sticky
  assert.ok(needsTrafficKey(route(50, true)));
  assert.not.ok(needsTrafficKey(route(50, false)));
  assert.not.ok(needsTrafficKey(route(100, true)));
  assert.not.ok(needsTrafficKey(route(null, true)));
});

test('traffic keys: header values and the cookie, trimmed and bounded', () => {
  assert.is(normalizeTrafficKey('  abc '), 'abc');
  assert.is(normalizeTrafficKey(''), null);
  assert.is(normalizeTrafficKey(undefined), null);
  assert.is(normalizeTrafficKey(['x', 'y']), 'x');
  assert.is(normalizeTrafficKey('k'.repeat(500))!.length, 200);
  assert.is(trafficKeyFromCookie('a=1; cp_traffic=xyz; b=2'), 'xyz');
  assert.is(trafficKeyFromCookie('cp_traffic_other=1'), null);
  assert.is(trafficKeyFromCookie(undefined), null);
  assert.is(trafficKeyFromCookie('cp_traffic=%E0%A4%A'), '%E0%A4%A', 'a malformed escape is a key like any other');
});

test.run();

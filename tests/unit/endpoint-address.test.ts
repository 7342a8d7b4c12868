// Endpoint addresses and handles: what a URL or Host names, and how handles are made.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { functionUrls, parseEndpointHost, parseEndpointPath } from '../../shared/domain/endpoint-address.ts';
import { deriveHandles, HANDLE_PATTERN, handleFromEmail, withSuffix } from '../../shared/domain/handles.ts';
import { loadConfig } from '../../shared/config.ts';

test('path form: handle, name, pinned version, the path within the function and the prefix', () => {
  assert.equal(parseEndpointPath('/fn/ada/api'), { handle: 'ada', name: 'api', version: undefined, path: '/', prefix: '/fn/ada/api' });
  assert.equal(parseEndpointPath('/fn/ada/api/'), { handle: 'ada', name: 'api', version: undefined, path: '/', prefix: '/fn/ada/api' });
  assert.equal(parseEndpointPath('/fn/ada/api/todos/1'), { handle: 'ada', name: 'api', version: undefined, path: '/todos/1', prefix: '/fn/ada/api' });
  assert.equal(parseEndpointPath('/fn/ada/api@v12/x%20y'), { handle: 'ada', name: 'api', version: 12, path: '/x%20y', prefix: '/fn/ada/api@v12' });
  assert.equal(parseEndpointPath('/fn/Ada/API/x')?.name, 'api');
  for (const bad of ['/fn/', '/fn/ada', '/fn/ada/', '/fn//api', '/fn/-ada/api', '/fn/ada/api@v0', '/fn/ada/api@v01x@', '/fn/ada/a_b', '/api/fn/ada/x', '/fn/a--b/x']) {
    assert.is(parseEndpointPath(bad), null, bad);
  }
});

test('path form: @{tag} names a tag; @v{N} is always a pin', () => {
  assert.equal(parseEndpointPath('/fn/ada/api@beta/x'), { handle: 'ada', name: 'api', version: undefined, tag: 'beta', path: '/x', prefix: '/fn/ada/api@beta' });
  assert.equal(parseEndpointPath('/fn/ada/api@pr-42'), { handle: 'ada', name: 'api', version: undefined, tag: 'pr-42', path: '/', prefix: '/fn/ada/api@pr-42' });
  assert.is(parseEndpointPath('/fn/ada/api@v3')?.tag, undefined);
  assert.is(parseEndpointPath('/fn/ada/api@v3')?.version, 3);
  assert.is(parseEndpointPath('/fn/ada/api@vx')?.tag, 'vx', 'v followed by letters is a tag');
  for (const bad of ['/fn/ada/api@', '/fn/ada/api@Beta', '/fn/ada/api@1x', `/fn/ada/api@${'a'.repeat(32)}`, '/fn/ada/api@a_b']) {
    assert.is(parseEndpointPath(bad), null, bad);
  }
});

test('host form: the last "--" separates name and handle; ports, case and a trailing dot are ignored', () => {
  assert.equal(parseEndpointHost('api--ada.fn.example.com', 'fn.example.com'), { handle: 'ada', name: 'api' });
  assert.equal(parseEndpointHost('My--Api--Ada.FN.example.com:8443', 'fn.example.com'), { handle: 'ada', name: 'my--api' });
  assert.equal(parseEndpointHost('api---ada.fn.example.com.', 'fn.example.com'), { handle: 'ada', name: 'api-' });
  for (const bad of ['fn.example.com', 'api.fn.example.com', 'x.api--ada.fn.example.com', 'api--ada.example.com', '--ada.fn.example.com', 'api--.fn.example.com', undefined]) {
    assert.is(parseEndpointHost(bad, 'fn.example.com'), null, String(bad));
  }
});

test('URLs: path form from the origin, host form with its scheme and port', () => {
  assert.equal(functionUrls({ origin: 'https://cp.example.com' }, 'ada', 'api'), { url: 'https://cp.example.com/fn/ada/api' });
  assert.equal(functionUrls({ origin: 'http://127.0.0.1:8080', functionsDomain: 'fn.localhost' }, 'ada', 'api'), {
    url: 'http://127.0.0.1:8080/fn/ada/api',
    hostUrl: 'http://api--ada.fn.localhost:8080',
  });
  assert.is(functionUrls({ origin: 'https://cp.example.com', functionsDomain: 'fn.example.com' }, 'ada', 'api').hostUrl, 'https://api--ada.fn.example.com');
});

test('handles from emails: reduced to a-z0-9 and single dashes, at most 39, never empty; suffixes stay within the limit', () => {
  assert.is(handleFromEmail('Ada.Lovelace+cp@example.com'), 'ada-lovelace-cp');
  assert.is(handleFromEmail('__@example.com'), 'user');
  assert.is(handleFromEmail(`${'x'.repeat(50)}@example.com`), 'x'.repeat(39));
  assert.is(withSuffix('x'.repeat(39), 12), `${'x'.repeat(36)}-12`);
  assert.is(withSuffix('ab', 1), 'ab');
  assert.equal(deriveHandles(['a@x.com', 'a@y.com', 'A@z.com', 'b@x.com']), ['a', 'a-2', 'a-3', 'b']);
  for (const h of ['a', 'a-b', 'a1-2b', 'x'.repeat(39)]) assert.ok(HANDLE_PATTERN.test(h), h);
  for (const h of ['', '-a', 'a-', 'a--b', 'A', 'x'.repeat(40), 'a_b']) assert.not.ok(HANDLE_PATTERN.test(h), h);
});

test('FUNCTIONS_DOMAIN and MAX_REQUEST_BYTES: defaults, lower-casing, refusals', () => {
  const d = loadConfig({});
  assert.is(d.endpoints.functionsDomain, undefined);
  assert.is(d.endpoints.maxRequestBytes, 6 * 1024 * 1024);
  assert.is(loadConfig({ FUNCTIONS_DOMAIN: 'FN.Example.com' }).endpoints.functionsDomain, 'fn.example.com');
  for (const bad of ['https://fn.example.com', 'fn.example.com:8080', 'fn..example.com', '-fn.example.com']) {
    assert.throws(() => loadConfig({ FUNCTIONS_DOMAIN: bad }), /FUNCTIONS_DOMAIN/, bad);
  }
  assert.throws(() => loadConfig({ MAX_REQUEST_BYTES: String(65 * 1024 * 1024) }), /MAX_REQUEST_BYTES/);
});

test.run();

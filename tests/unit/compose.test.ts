// docker-compose.yml, read as text (compose itself may not be installed where tests run): published
// ports bind loopback unless PUBLISH_ADDRESS says otherwise, every image is pinned, and no password
// has a default that works.
import fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const compose = fs.readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
const lines = compose.split('\n').map((l) => l.replace(/\s+#.*$/, ''));

test('every published port binds 127.0.0.1 (or PUBLISH_ADDRESS, defaulting to it)', () => {
  const ports = lines.filter((l) => /^\s+- "[^"]*\d+:\d+"/.test(l));
  assert.ok(ports.length >= 3, `found ${ports.length} port mappings`);
  for (const l of ports) assert.match(l, /- "(127\.0\.0\.1|\$\{PUBLISH_ADDRESS:-127\.0\.0\.1\}):\d+:\d+"/, l.trim());
});

test('every image is pinned to a version (no :latest, no bare name)', () => {
  const images = lines.filter((l) => /^\s+image:/.test(l)).map((l) => l.split('image:')[1]!.trim());
  assert.ok(images.length >= 4);
  for (const image of images) {
    if (image === 'containerpub:local') continue; // built here from the Dockerfile
    assert.match(image, /^[a-z0-9./-]+:[A-Za-z0-9._-]+$/, image);
    assert.not.match(image, /:latest$/, image);
  }
});

test('passwords come from the environment, required, with no working default', () => {
  const secrets = lines.filter((l) => /(PASSWORD|SECRET_ACCESS_KEY)\s*:/.test(l));
  assert.ok(secrets.length >= 3);
  for (const l of secrets) assert.match(l, /\$\{[A-Z_]+:\?[^}]*\}/, l.trim());
});

test.run();

// The platform's version: package.json's, read once.
import fs from 'node:fs';

let version: string | undefined;

export function platformVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
      version = typeof pkg.version === 'string' ? pkg.version : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

// The dashboard, served from this process on the API's own origin: GET / (api/ui/index.html),
// GET /ui/<file> (files under api/ui/), and the browser libraries as their packages ship them under
// /ui/vendor/. Files are read from disk per request, so a new deploy of the platform is picked up;
// an ETag lets the browser revalidate (Cache-Control: no-cache) without downloading again.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context } from 'hono';
import { errors } from '../../shared/errors.ts';
import type { App } from '../http/app.ts';

export const UI_DIR = fileURLToPath(new URL('../ui/', import.meta.url));

/** The page may load only what this origin serves: no inline script or style, no framing. */
export const DASHBOARD_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

const require = createRequire(import.meta.url);

/**
 * A package's own directory, found from the file its main entry resolves to (htm's "exports" map
 * hides its package.json and the standalone ESM build from require.resolve).
 */
const packageDirs = new Map<string, string>();
function packageDir(name: string): string {
  const known = packageDirs.get(name);
  if (known) return known;
  const found = findPackageDir(name);
  packageDirs.set(name, found);
  return found;
}

function findPackageDir(name: string): string {
  let dir = path.dirname(require.resolve(name));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (manifest.name === name) return dir;
    } catch {
      /* no package.json here: go up */
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`the package ${name} is not installed`);
    dir = up;
  }
}

/** /ui/vendor/<name> → the file its package ships, resolved lazily (a missing package is a 404, not a crash at start). */
const VENDOR: Record<string, () => string> = {
  'htm-preact.js': () => path.join(packageDir('htm'), 'preact', 'standalone.module.js'),
  'uplot.js': () => path.join(packageDir('uplot'), 'dist', 'uPlot.esm.js'),
  'uplot.css': () => path.join(packageDir('uplot'), 'dist', 'uPlot.min.css'),
};

/**
 * The file under api/ui/ a request names, or null: one decoded path below the directory, of a type
 * we serve, with no `..`, backslash, NUL or hidden segment (the router has already seen the raw
 * path; this is what reaches the disk).
 */
export function uiFileOf(rel: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return null;
  }
  if (decoded === '' || decoded.includes('\\') || decoded.includes('\0')) return null;
  const segments = decoded.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('.'))) return null;
  if (!(path.extname(decoded).toLowerCase() in CONTENT_TYPES)) return null;
  const file = path.resolve(UI_DIR, ...segments);
  return file.startsWith(UI_DIR) ? file : null;
}

async function serveFile(c: Context, file: string | null, what: string): Promise<Response> {
  if (!file) throw errors.notFound(what);
  let body: Buffer;
  try {
    body = await fs.readFile(file);
  } catch {
    throw errors.notFound(what);
  }
  const type = CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
  const headers: Record<string, string> = {
    'Content-Type': type,
    'Cache-Control': 'no-cache',
    ETag: etag,
    'X-Content-Type-Options': 'nosniff',
  };
  if (type.startsWith('text/html')) {
    headers['Content-Security-Policy'] = DASHBOARD_CSP;
    headers['Referrer-Policy'] = 'same-origin';
    headers['X-Frame-Options'] = 'DENY';
  }
  const ifNoneMatch = c.req.header('if-none-match');
  if (ifNoneMatch && ifNoneMatch.split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
    return c.body(null, 304, headers);
  }
  return c.body(new Uint8Array(body), 200, headers);
}

export function register(app: App): void {
  app.get('/', (c) => serveFile(c, path.join(UI_DIR, 'index.html'), 'the dashboard page'));
  app.get('/ui/*', (c) => {
    const rel = c.req.path.slice('/ui/'.length);
    if (rel.startsWith('vendor/')) {
      const resolve = VENDOR[rel.slice('vendor/'.length)];
      let file: string | null = null;
      try {
        file = resolve ? resolve() : null;
      } catch {
        file = null;
      }
      return serveFile(c, file, `file /ui/${rel.slice(0, 200)}`);
    }
    return serveFile(c, uiFileOf(rel), `file /ui/${rel.slice(0, 200)}`);
  });
}

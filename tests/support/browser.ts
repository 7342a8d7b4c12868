// A real browser for the dashboard's tests: Debian's chromium driven by playwright-core (no
// browser download: the system one, found at CHROMIUM_PATH or the usual places). Outside CI a
// missing chromium skips the file; under CI=true it fails it (requireService).
//
// Every page records what a user would not see but a developer must: console errors (a CSP
// violation is one), uncaught exceptions and answers ≥ 500. `expectClean` fails the test on any.
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { requireService } from './services.ts';

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(
  (p): p is string => Boolean(p),
);

export function chromiumPath(): string | null {
  return CANDIDATES.find((p) => fs.existsSync(p)) ?? null;
}

/** The browser, or null when there is none outside CI (the file then skips). */
export async function launchBrowser(): Promise<Browser | null> {
  const path = chromiumPath();
  if (!requireService('chromium', path !== null, `none of ${CANDIDATES.join(', ')} exists; apt-get install chromium`)) return null;
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
  return chromium.launch({ executablePath: path!, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** what went wrong on the page so far: console errors, exceptions, 5xx answers */
  problems: string[];
  /** fails with every problem recorded, then forgets them */
  expectClean(where: string): void;
  close(): Promise<void>;
}

export async function openPage(
  browser: Browser,
  baseUrl: string,
  opts: { viewport?: { width: number; height: number }; allow?: RegExp[] } = {},
): Promise<WatchedPage> {
  const context = await browser.newContext({ baseURL: baseUrl, viewport: opts.viewport ?? { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const problems: string[] = [];
  const allowed = (text: string) => (opts.allow ?? []).some((r) => r.test(text));
  page.on('console', (m) => {
    // a 4xx the page asked for and showed in words is expected; the browser logs it as an error
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text()) && !allowed(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  return {
    page,
    context,
    problems,
    expectClean(where) {
      const found = problems.splice(0);
      if (found.length) throw new Error(`${where}: the page had problems:\n  ${found.join('\n  ')}`);
    },
    close: () => context.close(),
  };
}

/**
 * Labelled controls: every input, select, textarea and button the page shows has a name a screen
 * reader can say. Returns the ones that do not (described by tag and attributes).
 */
export async function unlabelledControls(page: Page): Promise<string[]> {
  // run in the page (as text: this program is compiled without the DOM's types)
  return page.evaluate(`(() => {
    const out = [];
    for (const el of document.querySelectorAll('input, select, textarea, button')) {
      // not rendered (a closed dialog, a collapsed section): no one can reach it
      if (el.type === 'hidden' || el.getClientRects().length === 0) continue;
      const named =
        (el.labels && el.labels.length > 0) ||
        el.getAttribute('aria-label') ||
        el.getAttribute('aria-labelledby') ||
        (el.tagName === 'BUTTON' && el.textContent.trim() !== '');
      if (!named) out.push(el.outerHTML.slice(0, 120));
    }
    return out;
  })()`);
}

/** Whether the page scrolls sideways (unreadable on a phone). */
export async function overflowsSideways(page: Page): Promise<boolean> {
  return page.evaluate('document.documentElement.scrollWidth > window.innerWidth + 1');
}

// The processes the tests start by the hundred, from bundles (scripts/bundle.ts): each test file,
// and the runner, API, cleanup and CLI processes some of them start. Under `--import tsx`, Node 20
// sends every module (node_modules' too) through tsx's loader hooks, on a thread of their own: a
// process that loads the platform spent ~2 s of CPU more starting that way than from a bundle, on
// this 2-core machine where the suite is CPU-bound.
import fs from 'node:fs';
import path from 'node:path';
import { bundlePath, repoRoot } from '../../scripts/bundle.ts';
import { CLI_ENTRY } from '../../scripts/cli/cli-bundle.ts';

export { bundleForNode, bundlePath, repoRoot } from '../../scripts/bundle.ts';

/** Set by tests/run.ts: where it bundled every entry point of the run (test files, runner, API, cleanup, CLI). */
export const BUNDLES_ENV = 'CONTAINERPUB_TEST_BUNDLES';

// the CLI, whose packages (plain JavaScript) are bundled with it: they load ~0.13 s of CPU faster a run
export { CLI_ENTRY } from '../../scripts/cli/cli-bundle.ts';

/**
 * `node` arguments that run one of the entry points tests/run.ts bundles (CHILD_ENTRIES there, and
 * scripts/cli/main.ts): its bundle from tests/run.ts, or the TypeScript under
 * tsx for a test file run on its own. Stacks point at the TypeScript (source maps), except the
 * CLI's: it runs some 650 times a full pass, and source maps cost each run 0.05 s of its 0.2 s of
 * CPU; its errors are messages, not stacks.
 */
export function nodeArgsFor(entry: string): string[] {
  const dir = process.env[BUNDLES_ENV];
  const bundle = dir ? bundlePath(dir, entry) : null;
  if (!bundle || !fs.existsSync(bundle)) return ['--import', 'tsx', path.join(repoRoot, entry)];
  return entry === CLI_ENTRY ? [bundle] : ['--enable-source-maps', bundle];
}

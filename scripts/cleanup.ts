// `npm run cleanup -- [--dry-run] [--keep N] [--function NAME] [--json]`: one retention run now.
import { loadConfigOrExit } from '../shared/config.ts';
import { parseScriptArgs } from './script-args.ts';
import { runCleanup, type CleanupSummary } from '../shared/domain/retention.ts';
import { openPlatform } from '../shared/platform.ts';
import { driverFromConfig } from '../shared/runtime/from-config.ts';

const usage = `usage: npm run cleanup -- [--dry-run] [--keep N] [--function NAME] [--json]
  --dry-run        print what would be archived, expired or deleted; change nothing
  --keep N         built versions to keep per function (default KEEP_LAST_N)
  --function NAME  only functions with this name
  --json           print the summary as JSON`;

const args = parseScriptArgs(usage, {
  'dry-run': { type: 'boolean', default: false },
  keep: { type: 'string' },
  function: { type: 'string' },
  json: { type: 'boolean', default: false },
}).values;
const keep = args.keep === undefined ? undefined : Number(args.keep);
if (keep !== undefined && (!Number.isInteger(keep) || keep < 1)) {
  process.stderr.write(`--keep must be a positive integer, not ${args.keep}\n`);
  process.exit(2);
}

const config = loadConfigOrExit({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
const platform = await openPlatform(config, { secretsKey: 'none' });
const driver = await driverFromConfig(config, platform.logger);
let summary: CleanupSummary;
try {
  summary = await runCleanup(platform, driver, {
    dryRun: args['dry-run'],
    ...(keep === undefined ? {} : { keepLastN: keep }),
    ...(args.function ? { functionName: args.function } : {}),
  });
} finally {
  await driver.close();
  await platform.close();
}

if (args.json) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  if (summary.skipped) {
    process.stdout.write(`cleanup skipped: ${summary.reason}\n`);
  } else {
    if (summary.dryRun) {
      process.stdout.write(`dry run: ${summary.plan.length} action(s) planned, nothing changed\n`);
      for (const a of summary.plan) process.stdout.write(`  ${a.action.padEnd(22)} ${a.name} v${a.version}\n`);
    }
    // what the keep-last-N rule would have archived but retention left alone, and why
    for (const k of summary.kept) process.stdout.write(`  ${'kept'.padEnd(22)} ${k.name} v${k.version} (${k.reason})\n`);
    const s = summary;
    process.stdout.write(
      `functions scanned ${s.functionsScanned}, versions archived ${s.versionsArchived}, archives deleted ${s.archivesDeleted}, ` +
        `objects moved ${s.objectsMoved}, objects removed ${s.objectsRemoved}, images removed ${s.imagesRemoved}, ` +
        `failed archives removed ${s.failedArchivesRemoved}, uploads expired ${s.uploadsExpired}, ` +
        `versions kept ${s.kept.length}, bytes freed ${s.bytesFreed}, errors ${s.errors}, ${s.durationMs} ms\n`,
    );
  }
}
process.exit(summary.errors > 0 ? 1 : 0);

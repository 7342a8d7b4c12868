// deploy <dir> --name <name>: pack, upload through the presigned URL, follow the build.
// containerpub.json in <dir> gives the name (when --name does not) and the settings sent as the
// deploy's config; the last git commit of <dir>, when it is in a repository, its metadata.
import fs from 'node:fs';
import path from 'node:path';
import { FUNCTION_NAME_PATTERN } from '../../../shared/domain/model.ts';
import { deployPacked, describePacked, reportOutcome } from '../deploy.ts';
import { gitMetadata, PROJECT_FILE, readProject, type Project } from '../project.ts';
import { UsageError } from '../errors.ts';
import { formatBytes } from '../format.ts';
import { DEFAULT_MAX_BYTES, IGNORE_FILE, packDirectory, requireDirectory } from '../pack.ts';
import { intFlag, requiredFlag, stringFlag, type Command, type Flags, type OptionSpec } from './command.ts';

export const deployOptions: Record<string, OptionSpec> = {
  name: {
    type: 'string',
    value: 'name',
    description: `function name: 1-63 of a-z, 0-9, "-" (default: ${PROJECT_FILE}'s "name", else package.json's, else the directory's)`,
  },
  'max-bytes': {
    type: 'string',
    value: 'bytes',
    description: `refuse to upload an archive larger than this (default ${DEFAULT_MAX_BYTES}, ${formatBytes(DEFAULT_MAX_BYTES)})`,
  },
  timeout: { type: 'string', value: 'seconds', description: 'stop following a build after this long (default 600)' },
};

/** A package or directory name made into a function name ("@acme/Hello_World" → "hello-world"); null when nothing is left. */
export function sanitizeFunctionName(raw: string): string | null {
  const name = raw
    .replace(/^@[^/]*\//, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return FUNCTION_NAME_PATTERN.test(name) ? name : null;
}

function packageJsonName(dir: string): string | undefined {
  try {
    const name = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name;
    return typeof name === 'string' ? name : undefined;
  } catch {
    return undefined; // none, or not JSON: the build reports a broken package.json
  }
}

/**
 * The function's name: --name, else containerpub.json's "name", else package.json's "name" and then
 * the directory's name, each made into a valid function name. `dir` absent: --name or the file only.
 */
export function functionNameFlag(flags: Flags, command: string, project?: Project, dir?: string): string {
  const given = stringFlag(flags, 'name');
  const fromFile = given === undefined ? project?.name : undefined;
  let name = given ?? fromFile;
  if (name === undefined && dir !== undefined) {
    const pkg = packageJsonName(dir);
    name = (pkg !== undefined ? sanitizeFunctionName(pkg) : null) ?? sanitizeFunctionName(path.basename(dir)) ?? undefined;
  }
  if (name === undefined) name = requiredFlag(flags, 'name', command);
  if (!FUNCTION_NAME_PATTERN.test(name)) {
    const where = fromFile !== undefined ? ` (the "name" of ${project!.file})` : '';
    throw new UsageError(`invalid function name "${name}"${where}: use 1-63 characters of a-z, 0-9 and "-", starting with a letter or digit`);
  }
  return name;
}

export const deploy: Command = {
  name: 'deploy',
  summary: 'pack a directory and deploy it as a new version',
  usage: 'deploy <dir> [--name <name>] [options]',
  examples: [
    "deploy ./hello",
    "deploy ./hello --name hello --json",
    "deploy . --no-activate",
  ],
  details:
    `Packs <dir> into a .tar.gz (deterministically; ${IGNORE_FILE} in gitignore syntax leaves files out, .git always),\n` +
    'uploads it through a presigned URL, then follows the build until the version is active or failed;\n' +
    'once it is live, prints the URL it answers on (who may call it: see "containerpub access").\n' +
    `${PROJECT_FILE} in <dir> (optional, not packed) may give "name", "env", "memoryMb", "timeoutMs", "minInstances",\n` +
    '"maxInstances", "concurrency" and "network": sent as changes to the configuration the version inherits.\n' +
    'In a git repository, the last commit (subject, sha, author) is recorded with the version.\n' +
    '--no-activate: the version is built but does not go live; "containerpub approve" (or traffic, promote) does that.\n' +
    'Exit code 1 when the build fails (its log tail is printed).',
  options: {
    ...deployOptions,
    'no-wait': { type: 'boolean', description: 'return once the upload is complete, without following the build' },
    'no-activate': { type: 'boolean', description: 'build the version but leave the live one live (it awaits approval)' },
  },
  positionals: { names: ['dir'], min: 1 },
  async run(ctx) {
    const dir = ctx.resolvePath(ctx.positionals[0]!);
    const project = await readProject(requireDirectory(dir));
    const name = functionNameFlag(ctx.flags, 'deploy', project, dir);
    const maxBytes = intFlag(ctx.flags, 'max-bytes') ?? DEFAULT_MAX_BYTES;
    const timeoutS = intFlag(ctx.flags, 'timeout') ?? 600;
    const api = ctx.api();
    // Refused locally (missing, empty, too large) before any request is made.
    const packed = await packDirectory(dir, { maxBytes });
    ctx.out.info(describePacked(packed));
    if (project.config) ctx.out.info(`settings from ${PROJECT_FILE}: ${Object.keys(project.config).join(', ')}`);
    const metadata = gitMetadata(requireDirectory(dir));
    const outcome = await deployPacked(api, packed, {
      name,
      out: ctx.out,
      wait: ctx.flags['no-wait'] !== true,
      timeoutMs: timeoutS * 1000,
      config: project.config,
      metadata,
      activate: ctx.flags['no-activate'] !== true,
    });
    reportOutcome(ctx.out, outcome);
    ctx.out.data(outcome);
    return outcome.status === 'failed' ? 1 : 0;
  },
};

// What a function directory says about its deploy besides its files:
// - `containerpub.json` (optional): the function's name, environment and limits, sent by `deploy`
//   and `watch` as the deploy's `config` patch. Secrets never belong there (the file is usually
//   committed): they go through `containerpub secrets set`. The file is client-side configuration,
//   left out of the archive like .containerpubignore, so a settings edit does not change the code's
//   sha256.
// - git: when the directory is in a repository, the last commit (subject, sha, author) becomes the
//   deploy's `metadata`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CliError } from './errors.ts';

export const PROJECT_FILE = 'containerpub.json';

/** The keys of a config patch that containerpub.json may set (no secrets). */
export interface ProjectConfig {
  env?: Record<string, string>;
  memoryMb?: number;
  timeoutMs?: number;
  minInstances?: number;
  maxInstances?: number;
  concurrency?: number;
  network?: 'none' | 'outbound';
}

export interface Project {
  /** where it was read from, or null when the directory has none */
  file: string | null;
  name?: string;
  /** undefined when the file sets nothing */
  config?: ProjectConfig;
}

/**
 * The file's schema, built on first use: zod is loaded only by a command that finds a
 * containerpub.json. It is most of what the CLI would otherwise load at every start (~0.75 MB of
 * the bundled CLI's 1 MB, ~0.15 s of a command under tsx), and most commands never read the file.
 */
let projectSchema: Promise<ReturnType<typeof buildProjectSchema>> | undefined;

function buildProjectSchema(z: typeof import('zod').z) {
  const int = z.number().int('must be an integer');
  return z
    .object({
      $schema: z.string().optional(),
      name: z.string().optional(),
      env: z.record(z.string(), z.string({ error: 'env values must be strings' })).optional(),
      memoryMb: int.optional(),
      timeoutMs: int.optional(),
      minInstances: int.optional(),
      maxInstances: int.optional(),
      concurrency: int.optional(),
      network: z.enum(['none', 'outbound']).optional(),
      secrets: z.unknown().optional(),
    })
    .strict();
}

/** Reads `dir/containerpub.json` (absent: an empty project). Ranges and names are checked by the API. */
export async function readProject(dir: string): Promise<Project> {
  const file = path.join(dir, PROJECT_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { file: null };
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${file} is not valid JSON (${(err as Error).message})`);
  }
  projectSchema ??= import('zod').then(({ z }) => buildProjectSchema(z));
  const parsed = (await projectSchema).safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) =>
      i.code === 'unrecognized_keys'
        ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`
        : `${i.path.join('.') || '(file)'}: ${i.message}`,
    );
    throw new CliError(`${file}: ${issues.join('; ')} (keys: name, env, memoryMb, timeoutMs, minInstances, maxInstances, concurrency, network)`);
  }
  const { name, secrets, $schema: _schema, ...rest } = parsed.data;
  if (secrets !== undefined) {
    // Never repeat what is there: it may be a real secret.
    throw new CliError(`${file}: "secrets" do not belong in ${PROJECT_FILE} (it is usually committed); set them with "containerpub secrets set NAME <function>"`);
  }
  const config = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) as ProjectConfig;
  return { file, name, config: Object.keys(config).length > 0 ? config : undefined };
}

export interface GitMetadata {
  message?: string;
  gitSha?: string;
  author?: string;
}

/** Bounds of the metadata fields as the API accepts them. */
export const METADATA_LIMITS = { message: 500, author: 200 } as const;

function git(dir: string, args: string[]): string | null {
  try {
    return execFileSync('git', ['-C', dir, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
      // the user's own settings must not change what is read (no pager, no color)
      env: { ...process.env, GIT_PAGER: 'cat', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' },
    });
  } catch {
    return null; // no git, not a repository, or no commit yet
  }
}

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/** The last commit of the repository `dir` is in, or undefined when there is none (or no git). */
export function gitMetadata(dir: string): GitMetadata | undefined {
  if (git(dir, ['rev-parse', '--is-inside-work-tree'])?.trim() !== 'true') return undefined;
  const out = git(dir, ['log', '-1', '--format=%H%x00%an <%ae>%x00%s']);
  if (!out) return undefined;
  const [sha, author, subject] = out.replace(/\n$/, '').split('\0');
  if (!sha || !/^[0-9a-f]{40,64}$/.test(sha)) return undefined;
  const meta: GitMetadata = { gitSha: sha };
  if (subject) meta.message = clip(subject, METADATA_LIMITS.message);
  if (author && author !== ' <>') meta.author = clip(author, METADATA_LIMITS.author);
  return meta;
}

// Which images a tenant's Dockerfile may build from. A Dockerfile build runs on the platform's
// engine: a FROM (or COPY --from) naming any image would let one tenant build from another
// tenant's function image (`function-<id>-v<n>` is on the same engine and registry) or pull
// arbitrary images. Only the images in ALLOWED_BASE_IMAGES (the platform's base image by default)
// are accepted; the check runs before anything is built, and names the image it refuses.
//
// The parse follows Docker's rules where they matter for this question: parser directives (the
// escape character), line continuations, comments, case-insensitive instructions, flags such as
// --platform, ARG defaults before the first FROM (the platform passes no build args), stage names
// and indexes (a later FROM or COPY --from may name an earlier stage), and `scratch`.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BuildError } from './types.ts';

export interface DockerfileBase {
  /** the image as written, after ARG substitution */
  image: string;
  /** 1-based line of the instruction */
  line: number;
  instruction: 'FROM' | 'COPY --from';
}

/**
 * Normalizes an image reference for comparison: `docker.io/` and `docker.io/library/` (and
 * `index.docker.io/`) are dropped, a missing tag means `latest`. A digest reference stays as written.
 */
export function normalizeImage(ref: string): string {
  let name = ref.trim();
  name = name.replace(/^(?:index\.)?docker\.io\/(?:library\/)?/i, '');
  if (name.includes('@')) return name;
  const lastSlash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  return colon > lastSlash ? name : `${name}:latest`;
}

/** Whether `image` is allowed: exactly one of the entries, or `repository:*` for any of its tags. */
export function imageAllowed(image: string, allowed: readonly string[]): boolean {
  const wanted = normalizeImage(image);
  for (const entry of allowed) {
    const e = entry.trim();
    if (e === '') continue;
    if (e.endsWith(':*')) {
      const repo = normalizeImage(e.slice(0, -2)).replace(/:latest$/, '');
      if (wanted.startsWith(`${repo}:`) || wanted.startsWith(`${repo}@`)) return true;
    } else if (normalizeImage(e) === wanted) {
      return true;
    }
  }
  return false;
}

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** The Dockerfile's instructions, with continuations joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  // parser directives: only at the very top, as `# key=value` comments
  let escape = '\\';
  for (const raw of lines) {
    const m = /^\s*#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(raw);
    if (!m) break;
    if (m[1]!.toLowerCase() === 'escape' && (m[2] === '`' || m[2] === '\\')) escape = m[2]!;
  }
  const out: Instruction[] = [];
  let pending = '';
  let startLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    // a comment line inside a continuation is skipped, as Docker does
    if (trimmed.startsWith('#')) continue;
    if (pending === '' && trimmed === '') continue;
    if (pending === '') startLine = i + 1;
    const continued = trimmed.endsWith(escape);
    pending += (pending ? ' ' : '') + (continued ? trimmed.slice(0, -1) : trimmed);
    if (continued && i < lines.length - 1) continue;
    const m = /^(\S+)\s*(.*)$/s.exec(pending.trim());
    if (m) out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: startLine });
    pending = '';
  }
  return out;
}

/** `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` with the ARG defaults known so far. */
function substitute(value: string, args: Map<string, string | undefined>, line: number): string {
  return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_all, braced, op, word, bare) => {
    const name = (braced ?? bare) as string;
    const v = args.get(name);
    if (op === '-') return v ? v : (word as string);
    if (op === '+') return v ? (word as string) : '';
    if (v === undefined) {
      throw new BuildError(
        `Dockerfile line ${line}: the image name uses $${name}, which has no default value (the platform passes no build arguments)`,
      );
    }
    return v;
  });
}

/** Splits `--flag=value` options off the front of an instruction's arguments. */
function splitFlags(args: string): { flags: Map<string, string>; rest: string[] } {
  const words = args.split(/\s+/).filter(Boolean);
  const flags = new Map<string, string>();
  while (words.length > 0 && words[0]!.startsWith('--')) {
    const w = words.shift()!;
    const eq = w.indexOf('=');
    flags.set((eq === -1 ? w.slice(2) : w.slice(2, eq)).toLowerCase(), eq === -1 ? '' : w.slice(eq + 1));
  }
  return { flags, rest: words };
}

/** Every image a Dockerfile builds from: its FROM lines and COPY --from=<image>, stages excluded. */
export function dockerfileBases(text: string): DockerfileBase[] {
  const args = new Map<string, string | undefined>();
  const stages: string[] = [];
  const bases: DockerfileBase[] = [];
  const isStage = (ref: string) => /^\d+$/.test(ref) ? Number(ref) < stages.length : stages.includes(ref.toLowerCase());
  let seenFrom = false;
  for (const ins of instructions(text)) {
    if (ins.keyword === 'ARG' && !seenFrom) {
      // ARG NAME[=default] (several may follow one ARG)
      for (const decl of ins.args.split(/\s+/).filter(Boolean)) {
        const eq = decl.indexOf('=');
        const name = eq === -1 ? decl : decl.slice(0, eq);
        const value = eq === -1 ? undefined : decl.slice(eq + 1).replace(/^(["'])(.*)\1$/, '$2');
        args.set(name, value);
      }
    } else if (ins.keyword === 'FROM') {
      seenFrom = true;
      const { rest } = splitFlags(ins.args);
      if (rest.length === 0) throw new BuildError(`Dockerfile line ${ins.line}: FROM names no image`);
      const image = substitute(rest[0]!, args, ins.line);
      const alias = rest.length >= 3 && rest[1]!.toUpperCase() === 'AS' ? rest[2]!.toLowerCase() : `#${stages.length}`;
      if (image.toLowerCase() !== 'scratch' && !isStage(image)) bases.push({ image, line: ins.line, instruction: 'FROM' });
      stages.push(alias);
    } else if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const { flags } = splitFlags(ins.args);
      const from = flags.get('from');
      if (from !== undefined && from !== '' && !isStage(from)) {
        bases.push({ image: from, line: ins.line, instruction: 'COPY --from' });
      }
    }
  }
  if (!seenFrom) throw new BuildError('the Dockerfile has no FROM instruction');
  return bases;
}

/**
 * Refuses the build, before anything is built, when the archive's Dockerfile builds from an image
 * outside `allowed`. The message names the image and the line, and what is allowed.
 */
export async function checkDockerfileBases(sourceDir: string, allowed: readonly string[]): Promise<DockerfileBase[]> {
  const file = path.join(sourceDir, 'Dockerfile');
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new BuildError(`the Dockerfile cannot be read: ${err.code ?? err.message}`);
  });
  const bases = dockerfileBases(text);
  for (const base of bases) {
    if (!imageAllowed(base.image, allowed)) {
      throw new BuildError(
        `Dockerfile line ${base.line}: ${base.instruction} ${base.image} is not an allowed base image ` +
          `(allowed: ${allowed.join(', ')}; an operator can extend ALLOWED_BASE_IMAGES)`,
      );
    }
  }
  return bases;
}

// Where the CLI's words go. Human mode: results and progress on stdout, errors on stderr.
// `--json`: stdout carries only JSON (one document, or one object per line for `watch`, `canary`
// and `logs --follow`), and every human message moves to stderr so a script can pipe stdout
// straight into a parser.
//
// Colour: only the marks (✔ green, ✘/✖ red, → and … dim) on a terminal. Off when the stream is not
// a terminal, and whenever NO_COLOR is set to anything (https://no-color.org); FORCE_COLOR=1 turns
// it on anyway (a CI log that renders ANSI), FORCE_COLOR=0 off.

const PAINT: [RegExp, string][] = [
  [/^(\s*)(✔)/, '32'],
  [/^(\s*)(✘|✖|error:|warning:)/, '31'],
  [/^(\s*)(→|…|──)/, '2'],
];

/** Whether lines written to `stream` get colour, under `env`. */
export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0';
  return Boolean(stream.isTTY);
}

export function paint(line: string): string {
  for (const [pattern, code] of PAINT) {
    if (pattern.test(line)) return line.replace(pattern, (_m, space: string, mark: string) => `${space}\x1b[${code}m${mark}\x1b[0m`);
  }
  return line;
}

export class Output {
  private readonly colorOut: boolean;
  private readonly colorErr: boolean;

  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.colorOut = colorEnabled(stdout, env);
    this.colorErr = colorEnabled(stderr, env);
  }

  /** A human line: progress, status, results (stderr under --json). */
  info(line: string): void {
    if (this.json) this.stderr.write(`${this.colorErr ? paint(line) : line}\n`);
    else this.stdout.write(`${this.colorOut ? paint(line) : line}\n`);
  }

  /** A human line that is a warning or an error: always stderr. */
  error(line: string): void {
    this.stderr.write(`${this.colorErr ? paint(line) : line}\n`);
  }

  /** The primary result of a command, printed only under --json. */
  data(value: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One JSON object on one line (watch's event stream), printed only under --json. */
  event(value: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** stderr is a terminal: a progress bar can redraw itself there. */
  get interactive(): boolean {
    return Boolean(this.stderr.isTTY);
  }

  /** Redraws one status line in place (only when `interactive`). */
  progress(line: string, done = false): void {
    this.stderr.write(`\r${line}\x1b[K${done ? '\n' : ''}`);
  }
}

// Where the CLI's words go. Human mode: results and progress on stdout, errors on stderr.
// `--json`: stdout carries only JSON (one document, or one object per line for `watch`), and every
// human message moves to stderr so a script can pipe stdout straight into a parser.

export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  /** A human line: progress, status, results (stderr under --json). */
  info(line: string): void {
    (this.json ? this.stderr : this.stdout).write(`${line}\n`);
  }

  /** A human line that is a warning or an error: always stderr. */
  error(line: string): void {
    this.stderr.write(`${line}\n`);
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

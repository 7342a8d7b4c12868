// Asking for an email and a password when no flag gave them. On a terminal the password is read
// in raw mode without echo; otherwise (a pipe, a test) answers are read from stdin one line each.
import readline from 'node:readline';
import { UsageError } from './errors.ts';

let lines: AsyncIterator<string> | null = null;
let rl: readline.Interface | null = null;

async function nextStdinLine(): Promise<string | null> {
  if (!lines) {
    rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
    lines = rl[Symbol.asyncIterator]();
  }
  const next = await lines.next();
  return next.done ? null : next.value;
}

/** Releases stdin so the process can exit. */
export function closePrompts(): void {
  rl?.close();
  rl = null;
  lines = null;
}

export async function ask(question: string, flagHint: string): Promise<string> {
  if (process.stdin.isTTY) {
    const tty = readline.createInterface({ input: process.stdin, output: process.stderr });
    try {
      return (await new Promise<string>((resolve) => tty.question(question, resolve))).trim();
    } finally {
      tty.close();
    }
  }
  const line = await nextStdinLine();
  if (line === null) throw new UsageError(`no ${flagHint.replace(/^--/, '')} given: pass ${flagHint}`);
  return line.trim();
}

export async function askSecret(question: string, flagHint: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const line = await nextStdinLine();
    if (line === null) throw new UsageError(`no ${flagHint.replace(/^--/, '')} given: pass ${flagHint}`);
    return line;
  }
  // Raw mode first: the terminal echoes keys as they are typed, even before anyone reads them.
  stdin.setRawMode(true);
  process.stderr.write(question);
  stdin.resume();
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve) => {
      let value = '';
      const onData = (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            return resolve(value);
          }
          if (ch === '\u0003') {
            // Ctrl-C in raw mode arrives as a character, not as SIGINT
            process.stderr.write('\n');
            stdin.setRawMode(false);
            process.exit(130);
          }
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
          else value += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

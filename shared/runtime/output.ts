// What a finished invocation said, read the same way for both drivers (see protocol.ts): the result
// is the last non-empty line of stdout, a failure's message the last non-empty line of stderr.
// Memory stays bounded whatever the function prints: the logs keep their last 64 KiB, and stdout
// keeps only its current last line (up to 8 MiB, the largest result accepted).
import type { InvokeOutcome } from './types.ts';

export const LOG_LIMIT_BYTES = 64 * 1024;
export const RESULT_LIMIT_BYTES = 8 * 1024 * 1024;
/** stderr kept apart to find its last line; an error message longer than this is cut. */
const STDERR_TAIL_BYTES = 16 * 1024;
const MESSAGE_LIMIT_CHARS = 4 * 1024;

const NEWLINE = Buffer.from('\n');

/** Keeps the last `limit` bytes written to it. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  /** bytes written but no longer kept */
  dropped = 0;

  constructor(readonly limit: number) {}

  write(data: Buffer | string): void {
    let chunk = typeof data === 'string' ? Buffer.from(data) : data;
    if (chunk.length === 0) return;
    if (chunk.length >= this.limit) {
      this.dropped += this.size + chunk.length - this.limit;
      // a copy, so a huge chunk's memory is not retained through a small view of it
      this.chunks = [Buffer.from(chunk.subarray(chunk.length - this.limit))];
      this.size = this.limit;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length >= this.limit) {
      const first = this.chunks.shift()!;
      this.size -= first.length;
      this.dropped += first.length;
    }
  }

  toBuffer(): Buffer {
    const all = Buffer.concat(this.chunks, this.size);
    const excess = this.size - this.limit;
    if (excess <= 0) return all;
    this.chunks = [all.subarray(excess)];
    this.size = this.limit;
    this.dropped += excess;
    return this.chunks[0]!;
  }

  toString(): string {
    let buf = this.toBuffer();
    if (this.dropped > 0) {
      // the cut may have landed inside a UTF-8 sequence: skip its continuation bytes
      let i = 0;
      while (i < buf.length && i < 4 && (buf[i]! & 0xc0) === 0x80) i++;
      buf = buf.subarray(i);
    }
    return buf.toString('utf8');
  }
}

const isBlank = (buf: Buffer) => buf.toString('utf8').trim() === '';

/**
 * Tracks the last non-empty line of a stream. Every line that turns out not to be the last one is
 * passed to `spill` (the logs), as is any line longer than `limit` (it could never be a result).
 */
export class LastLineCollector {
  private current: Buffer[] = [];
  private currentSize = 0;
  private currentOverflow = false;
  private last: Buffer | null = null;
  private lastOverflow = false;

  constructor(
    private readonly limit: number,
    private readonly spill: (chunk: Buffer) => void,
  ) {}

  write(data: Buffer | string): void {
    const chunk = typeof data === 'string' ? Buffer.from(data) : data;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      this.append(chunk.subarray(start, nl === -1 ? chunk.length : nl));
      if (nl === -1) return;
      this.endLine();
      start = nl + 1;
    }
  }

  /** The last non-empty line, or overflow when that line was longer than the limit. */
  finish(): { line: string | null; overflow: boolean } {
    if (this.currentSize > 0 || this.currentOverflow) this.endLine();
    return { line: this.last ? this.last.toString('utf8').trim() : null, overflow: this.lastOverflow };
  }

  private append(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.currentOverflow) {
      this.spill(piece);
      return;
    }
    if (this.currentSize + piece.length > this.limit) {
      this.flushLast();
      for (const c of this.current) this.spill(c);
      this.spill(piece);
      this.current = [];
      this.currentSize = 0;
      this.currentOverflow = true;
      return;
    }
    this.current.push(piece);
    this.currentSize += piece.length;
  }

  private endLine(): void {
    if (this.currentOverflow) {
      this.spill(NEWLINE);
      this.currentOverflow = false;
      this.last = null;
      this.lastOverflow = true;
      return;
    }
    const line = Buffer.concat(this.current, this.currentSize);
    this.current = [];
    this.currentSize = 0;
    if (isBlank(line)) return;
    this.flushLast();
    this.last = line;
  }

  private flushLast(): void {
    if (this.last) {
      this.spill(this.last);
      this.spill(NEWLINE);
      this.last = null;
    }
    this.lastOverflow = false;
  }
}

export interface CollectedOutput {
  /** the last non-empty line of stdout (trimmed), or null */
  resultLine: string | null;
  /** the last line of stdout was longer than RESULT_LIMIT_BYTES */
  resultOverflow: boolean;
  /** the last non-empty line of stderr (trimmed, cut to a few KiB), or null */
  stderrLastLine: string | null;
  /** stderr and the stdout lines before the result, interleaved as they came, last 64 KiB */
  logs: string;
}

/** Receives a running function's stdout and stderr chunks; bounded whatever it prints. */
export class OutputCollector {
  private readonly logs = new TailBuffer(LOG_LIMIT_BYTES);
  private readonly stderrTail = new TailBuffer(STDERR_TAIL_BYTES);
  private readonly result = new LastLineCollector(RESULT_LIMIT_BYTES, (c) => this.logs.write(c));

  stdout(chunk: Buffer | string): void {
    this.result.write(chunk);
  }

  stderr(chunk: Buffer | string): void {
    this.logs.write(chunk);
    this.stderrTail.write(chunk);
  }

  finish(): CollectedOutput {
    const { line, overflow } = this.result.finish();
    const stderrLines = this.stderrTail.toString().split('\n');
    let stderrLastLine: string | null = null;
    for (let i = stderrLines.length - 1; i >= 0; i--) {
      const l = stderrLines[i]!.trim();
      if (l !== '') {
        stderrLastLine = l.length > MESSAGE_LIMIT_CHARS ? l.slice(0, MESSAGE_LIMIT_CHARS) + '…' : l;
        break;
      }
    }
    const text = this.logs.toString();
    const logs = this.logs.dropped > 0 ? `[${this.logs.dropped} bytes of earlier output dropped]\n${text}` : text;
    return { resultLine: line, resultOverflow: overflow, stderrLastLine, logs };
  }
}

export interface ProcessExit {
  /** null when killed by a signal */
  exitCode: number | null;
  signal?: string | null;
  timedOut: boolean;
  timeoutMs: number;
  /** the engine reported the container was killed for exceeding its memory limit */
  oomKilled?: boolean;
  memoryMb?: number;
  durationMs: number;
}

/** Turns what a finished invocation printed and how it exited into its outcome. */
export function parseInvocationOutput(output: CollectedOutput, exit: ProcessExit): InvokeOutcome {
  const { durationMs } = exit;
  // unless it is the result, the last stdout line is output like any other: it goes to the logs
  let logs = output.logs;
  if (output.resultLine !== null) {
    logs = `${logs}${output.resultLine}\n`;
    if (logs.length > LOG_LIMIT_BYTES) logs = logs.slice(logs.length - LOG_LIMIT_BYTES);
  }
  const error = (message: string): InvokeOutcome => ({ ok: false, kind: 'error', message, logs, durationMs });
  if (exit.timedOut) {
    return { ok: false, kind: 'timeout', message: `timed out after ${exit.timeoutMs} ms`, logs, durationMs };
  }
  if (exit.oomKilled) {
    const limit = exit.memoryMb ? ` of ${exit.memoryMb} MB` : '';
    return error(`killed: the function exceeded its memory limit${limit}`);
  }
  if (exit.exitCode !== 0) {
    if (output.stderrLastLine) return error(output.stderrLastLine);
    if (exit.exitCode === null) return error(`killed by signal ${exit.signal ?? 'unknown'}`);
    return error(`exited with code ${exit.exitCode}`);
  }
  if (output.resultOverflow) {
    return error(`the result is larger than ${RESULT_LIMIT_BYTES / (1024 * 1024)} MiB`);
  }
  if (output.resultLine === null) return error('the function exited without writing a result on stdout');
  try {
    return { ok: true, result: JSON.parse(output.resultLine), logs: output.logs, durationMs };
  } catch (err) {
    const head = output.resultLine.length > 200 ? output.resultLine.slice(0, 200) + '…' : output.resultLine;
    return error(`the last line of stdout is not valid JSON (${(err as Error).message}): ${head}`);
  }
}

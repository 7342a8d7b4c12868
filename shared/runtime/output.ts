// Bounded output: whatever a function or an instance prints, the platform keeps only its tail.

/** An error message longer than this is cut. */
const MESSAGE_LIMIT_CHARS = 4 * 1024;

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

/** The last non-empty line of `text`, trimmed and cut to a few KiB, or null. */
export function lastLine(text: string): string | null {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!.trim();
    if (l !== '') return l.length > MESSAGE_LIMIT_CHARS ? l.slice(0, MESSAGE_LIMIT_CHARS) + '…' : l;
  }
  return null;
}

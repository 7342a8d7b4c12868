// build_logs for one build, bounded in memory and in the row: the head (what was built, how it
// started) and the tail (where the error is) are kept within maxBytes, and one line in between says
// how much was cut. A single huge line (minified output, a progress bar without newlines) is cut
// too, so no line can take the whole budget.
const MARKER_RESERVE = 96;

export class BuildLog {
  private readonly head: string[] = [];
  private headBytes = 0;
  private headOpen = true;
  private readonly tail: string[] = [];
  private tailBytes = 0;
  private cutBytes = 0;
  private cutLines = 0;
  private readonly headMax: number;
  private readonly tailMax: number;
  private readonly lineMax: number;
  /** lines taken so far: whether the text changed since it was last written */
  private taken = 0;

  constructor(maxBytes: number) {
    const budget = Math.max(64, maxBytes - MARKER_RESERVE);
    this.headMax = Math.floor(budget / 2);
    this.tailMax = budget - this.headMax;
    // a quarter of the tail at most, so the lines around a huge one (the error after it) still fit
    this.lineMax = Math.max(48, Math.min(8192, Math.floor(this.tailMax / 4)));
  }

  line(text: string): void {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/\r$/, '');
      if (line !== '') {
        this.push(truncateLine(line, this.lineMax));
        this.taken++;
      }
    }
  }

  /** A number that grows with every line taken (compare two readings to see whether it changed). */
  get revision(): number {
    return this.taken;
  }

  private push(line: string): void {
    const bytes = Buffer.byteLength(line) + 1;
    if (this.headOpen) {
      if (this.headBytes + bytes <= this.headMax) {
        this.head.push(line);
        this.headBytes += bytes;
        return;
      }
      // the head is full: everything from here on competes for the tail
      this.headOpen = false;
    }
    this.tail.push(line);
    this.tailBytes += bytes;
    while (this.tailBytes > this.tailMax && this.tail.length > 1) {
      const gone = Buffer.byteLength(this.tail.shift()!) + 1;
      this.tailBytes -= gone;
      this.cutBytes += gone;
      this.cutLines++;
    }
  }

  text(): string {
    const parts = [...this.head];
    if (this.cutLines > 0) parts.push(`[… ${this.cutBytes} bytes (${this.cutLines} lines) of build output cut …]`);
    return [...parts, ...this.tail].join('\n');
  }
}

/** `line` within `max` bytes (UTF-8), saying how much of it was cut. */
function truncateLine(line: string, max: number): string {
  const size = Buffer.byteLength(line);
  if (size <= max - 1) return line;
  const note = ` [… ${size} bytes in this line, cut]`;
  const keep = Math.max(0, max - 1 - Buffer.byteLength(note));
  // (a character is at least one byte: the first `keep` characters hold the first `keep` bytes; a
  // cut inside a multi-byte character decodes to U+FFFD, dropped)
  const kept = Buffer.from(line.slice(0, keep)).subarray(0, keep).toString('utf8').replace(/\uFFFD+$/, '');
  return kept + note;
}

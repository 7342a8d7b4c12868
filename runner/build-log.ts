// build_logs for one build: every line is kept until the cap, then the oldest go, so the end of
// the log (where the error is) always survives.
export class BuildLog {
  private lines: string[] = [];
  private bytes = 0;
  private dropped = 0;

  constructor(private readonly maxBytes: number) {}

  line(text: string): void {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/\r$/, '');
      if (line === '') continue;
      this.lines.push(line);
      this.bytes += Buffer.byteLength(line) + 1;
    }
    while (this.bytes > this.maxBytes && this.lines.length > 1) {
      const gone = this.lines.shift()!;
      this.bytes -= Buffer.byteLength(gone) + 1;
      this.dropped += Buffer.byteLength(gone) + 1;
    }
  }

  text(): string {
    const head = this.dropped > 0 ? `[… ${this.dropped} earlier bytes of build output dropped …]\n` : '';
    return head + this.lines.join('\n');
  }
}

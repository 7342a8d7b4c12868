// Passes a body through only if it is exactly the declared bytes. The last chunk is held back
// until the length and sha256 are known to match, so a body that differs never reaches the store
// complete: the PUT behind it fails instead of storing a wrong object.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { errors } from '../errors.ts';

export class VerifyingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private held: Buffer | null = null;
  private size = 0;

  constructor(
    private readonly expectedSize: number,
    /** hex */
    private readonly expectedSha256: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.expectedSize) return done(errors.sizeMismatch(this.expectedSize, this.size));
    this.hash.update(chunk);
    if (this.held) this.push(this.held);
    this.held = chunk;
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.size !== this.expectedSize) return done(errors.sizeMismatch(this.expectedSize, this.size));
    const actual = this.hash.digest('hex');
    if (actual !== this.expectedSha256.toLowerCase()) return done(errors.checksumMismatch(this.expectedSha256, actual));
    if (this.held) this.push(this.held);
    done();
  }
}

// A PostgreSQL LISTEN connection that stays up: when it breaks it reconnects with backoff, forever,
// and tells its owner (`onReset`) that notifications may have been missed meanwhile, so that what
// they would have invalidated is invalidated anyway.
import pg from 'pg';
import type { Logger } from '../logger.ts';

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;

export interface PgListenerOptions {
  url: string;
  channels: string[];
  /** `senderPid`: the server process of the connection that sent it */
  onNotification(channel: string, payload: string | undefined, senderPid: number): void;
  /** the connection came (back) up: anything may have changed while it was down */
  onReset?(): void;
  logger: Logger;
}

export class PgListener {
  private client: pg.Client | null = null;
  private stopped = false;
  private backoff = MIN_BACKOFF_MS;
  private timer?: NodeJS.Timeout;
  /** true while LISTEN is in place: notifications arrive */
  healthy = false;

  constructor(private readonly opts: PgListenerOptions) {}

  /** Connects once; false (and retrying in the background) when the first try failed. */
  async start(): Promise<boolean> {
    try {
      await this.connect();
      return true;
    } catch (err) {
      this.opts.logger.warn('LISTEN failed; retrying in the background', { channels: this.opts.channels, err });
      this.scheduleReconnect();
      return false;
    }
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.url, connectionTimeoutMillis: 5_000 });
    client.on('notification', (msg) => this.opts.onNotification(msg.channel, msg.payload, msg.processId));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      await client.connect();
      for (const channel of this.opts.channels) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw err;
    }
    if (this.stopped) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.healthy = true;
    this.backoff = MIN_BACKOFF_MS;
    this.opts.onReset?.();
  }

  private lost(client: pg.Client, err: Error): void {
    if (this.client !== client) return;
    this.client = null;
    this.healthy = false;
    client.removeAllListeners('end');
    client.end().catch(() => {});
    if (this.stopped) return;
    this.opts.logger.warn('LISTEN connection lost; reconnecting', { channels: this.opts.channels, err });
    this.opts.onReset?.();
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(() => {
      this.connect().catch((err) => {
        this.opts.logger.debug('LISTEN reconnect failed', { err });
        this.scheduleReconnect();
      });
    }, wait);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.healthy = false;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
    }
  }
}

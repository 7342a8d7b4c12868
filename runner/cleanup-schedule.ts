// The scheduled retention cleanup, hosted by every runner (CLEANUP_CRON). Runners on several hosts
// may all fire at once: the cleanup lock lets exactly one of them work.
import cron, { type ScheduledTask } from 'node-cron';
import { runCleanup } from '../shared/domain/retention.ts';
import type { Platform } from '../shared/platform.ts';
import type { RuntimeDriver } from '../shared/runtime/types.ts';

export class CleanupSchedule {
  private task?: ScheduledTask;
  private running?: Promise<unknown>;

  constructor(
    private readonly p: Platform,
    private readonly driver: RuntimeDriver,
    private readonly holder: string,
  ) {}

  start(): void {
    const expr = this.p.config.cleanup.cron;
    if (!expr) {
      this.p.logger.info('scheduled cleanup disabled (CLEANUP_CRON=off)');
      return;
    }
    this.task = cron.schedule(expr, () => this.runOnce(), { name: 'containerpub-cleanup', noOverlap: true });
    this.p.logger.info('scheduled cleanup', { cron: expr, keepLastN: this.p.config.retention.keepLastN, archiveMode: this.p.config.cleanup.archiveMode });
  }

  runOnce(): Promise<unknown> {
    this.running ??= runCleanup(this.p, this.driver, { holder: this.holder })
      .then((summary) => this.p.metrics.observeCleanup(summary))
      .catch((err) => {
        this.p.metrics.observeCleanup(null);
        this.p.logger.error('scheduled cleanup failed', { err });
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    await this.task?.destroy?.();
    await this.running;
  }
}

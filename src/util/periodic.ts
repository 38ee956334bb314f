/**
 * Runs `round` at once and then `intervalMs` after each round has finished (rounds never overlap);
 * stop() waits for a round in flight, so its bound is the round's own.
 */
export class Periodic {
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly round: () => Promise<void>, private readonly intervalMs: number) {}

  /** Starts (once); resolves when the first round has finished. */
  start(): Promise<void> {
    if (!this.running) {
      this.running = true;
      this.run();
    }
    return this.inFlight;
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }

  private run(): void {
    this.inFlight = this.round().catch(() => undefined).finally(() => {
      if (this.running) this.timer = setTimeout(() => this.run(), this.intervalMs);
    });
  }
}

import { Logger } from './log';

/**
 * Logs refusals at most `perWindow` times per window, then counts the rest and says how many were left
 * out with the next line logged: a flood of forged requests cannot turn into a flood of log lines.
 * Holds two counters, whatever is refused.
 */
export class RefusalLog {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger, private readonly perWindow = 20, private readonly windowMs = 10_000, private readonly now: () => number = Date.now) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.logged = 0;
    }
    if (this.logged >= this.perWindow) {
      this.suppressed++;
      return;
    }
    this.logged++;
    const left = this.suppressed;
    this.suppressed = 0;
    this.log.warn(left ? { ...fields, suppressedBefore: left } : fields, msg);
  }
}

import { Mark, MarkName, Marks } from '../../src/metrics/marks';

/** Keeps every mark from now on, so a test can wait for one that may already have happened. */
export class MarkLog {
  readonly marks: Mark[] = [];
  private waiters: Array<{ wacid: string | null; name: MarkName; resolve: (m: Mark) => void }> = [];

  constructor(source: Marks) {
    source.on('mark', (m: Mark) => {
      this.marks.push(m);
      this.waiters = this.waiters.filter((w) => ((w.wacid === null || w.wacid === m.wacid) && w.name === m.name ? (w.resolve(m), false) : true));
    });
  }

  get(wacid: string, name: MarkName): Mark | undefined {
    return this.marks.find((m) => m.wacid === wacid && m.name === name);
  }

  /** `wacid` null: the first mark of that name, whichever call made it. */
  waitFor(wacid: string | null, name: MarkName): Promise<Mark> {
    const seen = this.marks.find((m) => (wacid === null || m.wacid === wacid) && m.name === name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ wacid, name, resolve }));
  }
}

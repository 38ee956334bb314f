/** A bridge log destination (StackOptions.logStream) that keeps the JSON lines and lets a test await one. */
export class LogTap {
  private text = '';
  private waiters: Array<{ test: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }> = [];

  write(chunk: string): void {
    this.text += chunk;
    for (const raw of chunk.split('\n').filter(Boolean)) {
      const line = parse(raw);
      this.waiters = this.waiters.filter((w) => (w.test(line) ? (w.resolve(line), false) : true));
    }
  }

  get all(): string {
    return this.text;
  }

  lines(): Array<Record<string, unknown>> {
    return this.text.split('\n').filter(Boolean).map(parse);
  }

  /** Resolves with the first line (so far or to come) whose msg matches; rejects after `timeoutMs`. */
  waitFor(msg: RegExp, timeoutMs = 20000): Promise<Record<string, unknown>> {
    const test = (l: Record<string, unknown>) => msg.test(String(l.msg ?? ''));
    const seen = this.lines().find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no log line matching ${msg} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ test, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }
}

function parse(raw: string): Record<string, unknown> {
  try {
    return JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return { msg: raw };
  }
}

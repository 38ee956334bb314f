import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';

/**
 * A CSV export as a stream that holds little: it fetches the next page of rows only when its reader
 * asks for more (after the bytes before have left), hands them on in chunks of at most CHUNK_BYTES, and
 * is ended when its reader has taken nothing for `stallMs` while data waited (a client that stopped
 * reading would otherwise keep its page, the response's buffer and its admission slot for ever).
 */

/** The largest chunk handed to the response; also the stream's highWaterMark. */
export const CHUNK_BYTES = 16 * 1024;

/** The next page of CSV text; `done` once no rows are left. */
export type NextPage = () => Promise<{ text: string; done: boolean }>;

export interface PagedCsvOptions {
  /** End the export when the reader has asked for nothing for this long while data waited; 0: never. */
  stallMs?: number;
  /** Told once when the export is ended for a stalled reader (after the stream is destroyed). */
  onStall?: (bufferedBytes: number) => void;
}

export class PagedCsvStream extends Readable {
  /** The page being fetched, if any: destroying waits for it, so nothing is fetched after 'close'. */
  private fetching: Promise<void> | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  /** True once ended because the reader stalled. */
  stalled = false;

  constructor(header: string, private readonly next: NextPage, private readonly o: PagedCsvOptions = {}) {
    super({ highWaterMark: CHUNK_BYTES });
    this.pushText(header);
  }

  override _read(): void {
    this.clearStall();
    if (this.fetching) return;
    this.fetching = this.next().then(({ text, done }) => {
      this.fetching = null;
      if (this.destroyed) return;
      const more = this.pushText(text);
      if (done) this.push(null);
      else if (!more) this.armStall();
    }, (err: unknown) => {
      this.fetching = null;
      if (!this.destroyed) this.destroy(err as Error);
    });
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.clearStall();
    if (!this.fetching) return cb(err);
    // A query in flight is bounded by the pool's statement timeout.
    void this.fetching.then(() => cb(err));
  }

  /** Pushes `text` in chunks of at most CHUNK_BYTES; false when the reader should be waited for. */
  private pushText(text: string): boolean {
    if (!text) return true;
    const buf = Buffer.from(text, 'utf8');
    let ok = true;
    for (let at = 0; at < buf.length; at += CHUNK_BYTES) ok = this.push(buf.subarray(at, at + CHUNK_BYTES));
    return ok;
  }

  /** Waits `stallMs` for the reader; one that took some bytes meanwhile is slow, not stalled: wait again. */
  private armStall(): void {
    const ms = this.o.stallMs ?? 0;
    if (ms <= 0 || this.stallTimer) return;
    const waiting = this.readableLength;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null;
      if (this.destroyed || this.readableEnded) return;
      if (this.readableLength < waiting) return this.armStall();
      const buffered = this.readableLength;
      this.stalled = true;
      this.emit('stalled');
      this.destroy();
      this.o.onStall?.(buffered);
    }, ms);
    this.stallTimer.unref();
  }

  private clearStall(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
  }
}

/** What an export in progress holds in this process: its stream's buffer and its response's. */
export interface ExportBuffers { stream: Readable; response: { writableLength: number } }

/**
 * The exports in progress, so that what they buffer can be measured (tests, diagnostics). Emits
 * 'added', 'stalled' (bytes the export held when it was ended for a reader that read nothing) and
 * 'removed'.
 */
export class ActiveExports extends EventEmitter {
  private readonly open = new Set<ExportBuffers>();

  /** Tracks `e` until its stream closes. */
  add(e: ExportBuffers): void {
    this.open.add(e);
    const stalled = () => this.emit('stalled', e.stream.readableLength + e.response.writableLength);
    e.stream.once('stalled', stalled);
    e.stream.once('close', () => {
      e.stream.off('stalled', stalled);
      this.open.delete(e);
      this.emit('removed');
    });
    this.emit('added');
  }

  get count(): number {
    return this.open.size;
  }

  /** Bytes each export in progress holds: not yet taken from its stream plus not yet sent from its response. */
  bufferedBytes(): number[] {
    return [...this.open].map((e) => e.stream.readableLength + e.response.writableLength);
  }
}

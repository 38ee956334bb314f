import { IncomingMessage } from 'node:http';

export class BodyTooLargeError extends Error {}
/** The body did not arrive in full within the read's time limit (a slow or stalled upload). */
export class BodyTimeoutError extends Error {}
/** The body arrived slower than the minimum rate once its grace period was over (a trickle). */
export class BodyTooSlowError extends Error {}
/** The read was given up by its owner (`signal`), e.g. to make way for another request. */
export class BodyEvictedError extends Error {}
/** The client went away before the body was complete. */
export class BodyAbortedError extends Error {}

export interface ReadBodyOptions {
  /** The whole body within this (default 10 s). */
  timeoutMs?: number;
  /**
   * After `graceMs`, at least this many bytes a second on average since the start: bytes received >=
   * minBytesPerS x (elapsed - grace). 0 or absent: no minimum rate.
   */
  minBytesPerS?: number;
  /** How long any rate is accepted at first (default 1 s). */
  graceMs?: number;
  /** Aborting it ends the read at once (BodyEvictedError). */
  signal?: AbortSignal;
  /** Told the size received so far after each chunk. */
  onProgress?: (bytes: number) => void;
}

/**
 * Reads the request body as bytes (signatures are computed over the exact bytes sent), at most
 * `limitBytes` of it, within the time limit and, with `minBytesPerS`, never falling behind that rate
 * after the grace period. Past any limit it stops listening and rejects at once, holding nothing more;
 * the caller should answer with `Connection: close` so the rest is not read.
 */
export function readRawBody(req: IncomingMessage, limitBytes: number, opts: ReadBodyOptions = {}): Promise<Buffer> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const graceMs = opts.graceMs ?? 1000;
  const rate = opts.minBytesPerS ?? 0;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const started = performance.now();
    let rateTimer: NodeJS.Timeout | undefined;
    const done = (err: Error | null) => {
      clearTimeout(timer);
      clearTimeout(rateTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err) {
        chunks.length = 0;
        // The rest is discarded, not kept: until the answer's `Connection: close` ends the socket, or
        // (a caller that keeps it open) the end of the body or the server's requestTimeout.
        req.resume();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    // When the bytes received so far stop covering the minimum rate: armed once, re-armed further
    // on when it fires early (bytes came meanwhile), so a steady sender costs a few timers, not one per chunk.
    const behindAt = () => graceMs + (size * 1000) / rate;
    const checkRate = () => {
      const elapsed = performance.now() - started;
      const due = behindAt();
      if (elapsed >= due) return done(new BodyTooSlowError(`body arrived slower than ${rate} bytes/s`));
      rateTimer = setTimeout(checkRate, Math.ceil(due - elapsed));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) return done(new BodyTooLargeError(`body exceeds ${limitBytes} bytes`));
      chunks.push(chunk);
      opts.onProgress?.(size);
    };
    const onEnd = () => done(null);
    const onError = (err: Error) => done(new BodyAbortedError(`body unreadable: ${err.message}`));
    const onClose = () => done(new BodyAbortedError('client closed the connection before the body was complete'));
    const onAbort = () => done(new BodyEvictedError('read given up'));
    const timer = setTimeout(() => done(new BodyTimeoutError(`body not received within ${timeoutMs} ms`)), timeoutMs);
    if (rate > 0) rateTimer = setTimeout(checkRate, graceMs);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

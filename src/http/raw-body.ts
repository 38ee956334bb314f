import { IncomingMessage } from 'node:http';

export class BodyTooLargeError extends Error {}
/** The body did not arrive in full within the read's time limit (a slow or stalled upload). */
export class BodyTimeoutError extends Error {}
/** The client went away before the body was complete. */
export class BodyAbortedError extends Error {}

/**
 * Reads the request body as bytes (signatures are computed over the exact bytes sent), at most
 * `limitBytes` of it and within `timeoutMs`. Past either limit it stops listening and rejects at once,
 * holding nothing more; the caller should answer with `Connection: close` so the rest is not read.
 */
export function readRawBody(req: IncomingMessage, limitBytes: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: Error | null) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err) {
        chunks.length = 0;
        // The rest is discarded, not kept: until the answer's `Connection: close` ends the socket, or
        // (a caller that keeps it open) the end of the body or the server's requestTimeout.
        req.resume();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) return done(new BodyTooLargeError(`body exceeds ${limitBytes} bytes`));
      chunks.push(chunk);
    };
    const onEnd = () => done(null);
    const onError = (err: Error) => done(new BodyAbortedError(`body unreadable: ${err.message}`));
    const onClose = () => done(new BodyAbortedError('client closed the connection before the body was complete'));
    const timer = setTimeout(() => done(new BodyTimeoutError(`body not received within ${timeoutMs} ms`)), timeoutMs);
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

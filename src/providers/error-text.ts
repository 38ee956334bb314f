import { ProviderError } from '../calls/provider-port';

/**
 * A provider's failed request as an operator reads it: no answer is not a refusal. "could not reach
 * YCloud (GET /x: fetch failed: connect ECONNREFUSED ...)" when the network failed, "YCloud did not
 * answer: GET /x: timed out after N ms" when the time ran out, "YCloud refused: ..." only when YCloud
 * answered with an error status.
 */
export function providerErrorText(err: ProviderError): string {
  const wa = err.whatsappCode ? ` (WhatsApp error ${err.whatsappCode})` : '';
  if (err.httpStatus === null) {
    return err.timedOut ? `${err.provider} did not answer: ${err.message}${wa}` : `could not reach ${err.provider} (${err.message})${wa}`;
  }
  return `${err.provider} refused: ${err.message}${wa}`;
}

/**
 * Why fetch() failed, with its cause: undici says only "fetch failed" and keeps the reason (connect
 * ECONNREFUSED 127.0.0.1:9, getaddrinfo ENOTFOUND api.example, a certificate error) in `cause`.
 */
export function networkFailure(err: unknown): string {
  const e = err as { message?: unknown; cause?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const cause = e?.cause as { message?: unknown; code?: unknown; errors?: unknown } | undefined;
  if (!cause || typeof cause !== 'object') return message;
  // Happy-eyeballs failures are an AggregateError with an empty message: their first error says it.
  const inner = Array.isArray(cause.errors) && cause.errors[0] instanceof Error ? cause.errors[0] : null;
  const why = (typeof cause.message === 'string' && cause.message) || inner?.message || (typeof cause.code === 'string' ? cause.code : '');
  return why && why !== message ? `${message}: ${why}` : message;
}

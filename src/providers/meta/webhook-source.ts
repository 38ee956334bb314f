import crypto from 'node:crypto';
import { CallEvent } from '../../calls/call-events';
import { ParsedWebhook, SignatureCheck, WebhookSource } from '../../events/webhook-source';
import { decodeUnit, parseMetaEnvelope } from './events';
import { checkMetaSignatureHeader, META_SIGNATURE_HEADER, verifyMetaSignature } from './signature';

export interface MetaWebhooksOptions {
  /** The provider account's name: the webhook path segment (POST /webhooks/<name>). */
  name: string;
  /** The App Secret the signature is keyed with. */
  appSecret: string;
  /** What Meta's subscription check (GET hub.verify_token) must present. */
  verifyToken: string;
}

/** The longest hub.challenge echoed back (Meta's are a few digits): printable ASCII only. */
const MAX_CHALLENGE_CHARS = 256;

/**
 * Meta's webhooks (Graph API, also passed through by 360dialog and similar providers):
 * `X-Hub-Signature-256` over the raw body with the App Secret, several events per POST, and a GET
 * subscription check.
 */
export class MetaWebhooks implements WebhookSource {
  readonly provider: string;
  readonly signatureHeader = META_SIGNATURE_HEADER;
  /**
   * Meta batches several changes in one POST (at most 50 events are taken): room for a batch of call
   * offers with their SDPs (1-3 KiB each), where one YCloud event gets 64 KiB.
   */
  readonly maxBodyBytes = 512 * 1024;

  constructor(private readonly opts: MetaWebhooksOptions) {
    this.provider = opts.name;
  }

  checkHeader(header: string | undefined): SignatureCheck {
    return checkMetaSignatureHeader(header);
  }

  verify(header: string | undefined, raw: Buffer): SignatureCheck {
    return verifyMetaSignature(this.opts.appSecret, header, raw);
  }

  parse(body: Buffer): ParsedWebhook {
    return parseMetaEnvelope(body);
  }

  decodeStored(payload: unknown): CallEvent | null {
    const decoded = decodeUnit(payload);
    return decoded.ok ? decoded.event : null;
  }

  /**
   * GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...: 200 with the challenge when the token
   * is the configured one (compared in constant time), else 403.
   */
  verifyChallenge(query: Record<string, string | string[] | undefined>): { status: number; body: string } {
    const mode = one(query['hub.mode']);
    const token = one(query['hub.verify_token']);
    const challenge = one(query['hub.challenge']);
    if (mode !== 'subscribe' || token === null || !sameSecret(token, this.opts.verifyToken)) return { status: 403, body: 'forbidden' };
    if (challenge === null || challenge.length === 0 || challenge.length > MAX_CHALLENGE_CHARS || !/^[\x21-\x7e]+$/.test(challenge)) {
      return { status: 400, body: 'hub.challenge must be 1-256 printable characters' };
    }
    return { status: 200, body: challenge };
  }
}

function one(v: string | string[] | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

/** Equal in constant time (over digests, so lengths do not leak either). */
function sameSecret(given: string, expected: string): boolean {
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b) && expected.length > 0;
}

import { CallEvent } from '../../calls/call-events';
import { ParsedWebhook, SignatureCheck, WebhookSource } from '../../events/webhook-source';
import { parseWebhookEvent, toCallEvent } from './events';
import { checkSignatureHeader, verifyWebhookSignature } from './signature';

/** YCloud's webhooks: `YCloud-Signature` (HMAC-SHA256 over "<t>.<body>"), one event per POST. */
export class YCloudWebhooks implements WebhookSource {
  readonly signatureHeader = 'YCloud-Signature';
  /** One event per POST: the largest legitimate one (a connect with a 16 KiB SDP) is well under 64 KiB. */
  readonly maxBodyBytes = 64 * 1024;

  /** `provider`: the account's name, the webhook path segment (POST /webhooks/<provider>). */
  constructor(private readonly secret: string, private readonly toleranceSeconds: number, readonly provider = 'ycloud') {}

  checkHeader(header: string | undefined): SignatureCheck {
    return checkSignatureHeader(header, this.toleranceSeconds);
  }

  verify(header: string | undefined, raw: Buffer): SignatureCheck {
    return verifyWebhookSignature(this.secret, header, raw, this.toleranceSeconds);
  }

  parse(body: Buffer): ParsedWebhook {
    const parsed = parseWebhookEvent(body);
    if (!parsed.ok) return parsed;
    return { ok: true, deliveries: [{ id: parsed.id, type: parsed.type, payload: parsed.json, event: parsed.event ? toCallEvent(parsed.event) : null }] };
  }

  decodeStored(payload: unknown): CallEvent | null {
    const parsed = parseWebhookEvent(Buffer.from(JSON.stringify(payload)));
    return parsed.ok && parsed.event ? toCallEvent(parsed.event) : null;
  }
}

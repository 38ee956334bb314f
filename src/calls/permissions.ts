import { PermissionRecords } from '../cdr/permission-records';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { PermissionReply } from './call-events';
import { PermissionRequestBody, ProviderError, WhatsAppProvider } from './provider-port';

export type PermissionState =
  | { allowed: true; permanent: boolean; expiresAt: Date | null }
  | { allowed: false; reason: 'none' | 'rejected' | 'expired'; since: Date | null };

/** A temporary grant lasts 7 days when the reply does not say otherwise (Meta's documented default). */
const DEFAULT_GRANT_MS = 7 * 24 * 3600 * 1000;

/** Call permissions: every reply and request is kept; the latest reply decides, with expiry honoured. */
export class PermissionStore {
  constructor(private readonly db: PermissionRecords, private readonly provider: WhatsAppProvider, private readonly log: Logger, private readonly metrics?: Metrics) {}

  /**
   * Records a reply once per webhook event: false when its event was recorded before (a redelivery
   * acted on again, e.g. after a restart; see the unique index on event_id), true when stored now.
   */
  async recordReply(r: PermissionReply): Promise<boolean> {
    const expiresAt = r.response === 'accept' && !r.isPermanent ? (r.expiresAt ?? new Date(r.repliedAt.getTime() + DEFAULT_GRANT_MS)) : r.expiresAt;
    return this.db.addReply({ ...r, expiresAt });
  }

  async check(businessNumber: string, customerNumber: string, now = new Date()): Promise<PermissionState> {
    const last = await this.db.latestReply(businessNumber, customerNumber);
    if (!last) return { allowed: false, reason: 'none', since: null };
    if (last.response !== 'accept') return { allowed: false, reason: 'rejected', since: last.replied_at };
    if (!last.is_permanent && last.expires_at && last.expires_at <= now) return { allowed: false, reason: 'expired', since: last.expires_at };
    return { allowed: true, permanent: last.is_permanent, expiresAt: last.is_permanent ? null : last.expires_at };
  }

  async list(filter: { businessNumber?: string; customerNumber?: string; limit?: number }): Promise<unknown[]> {
    return this.db.listReplies(filter);
  }

  /** Sends a call-permission request through messages/sendDirectly and records it (sent or failed). */
  async request(businessNumber: string, customerNumber: string, body: PermissionRequestBody, trigger: 'api' | 'auto'): Promise<{ messageId: string | null }> {
    let messageId: string | null = null;
    let error: string | null = null;
    try {
      ({ messageId } = await this.provider.requestPermission(businessNumber, customerNumber, body));
      this.metrics?.permissionRequest(trigger, 'sent');
    } catch (err) {
      error = (err as Error).message;
      this.metrics?.permissionRequest(trigger, err instanceof ProviderError && err.httpStatus === 429 ? 'rate_limited' : 'failed');
    }
    await this.db.addRequest({ businessNumber, customerNumber, kind: body.kind, trigger, messageId, error });
    if (error) {
      this.log.warn({ businessNumber, customerNumber, error }, 'call permission request failed');
      throw new Error(error);
    }
    return { messageId };
  }

  async requests(businessNumber: string, customerNumber: string): Promise<Array<{ kind: string; trigger: string; message_id: string | null; error: string | null; sent_at: Date }>> {
    return this.db.listRequests(businessNumber, customerNumber);
  }
}

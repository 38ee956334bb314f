import { PermissionRecords } from '../cdr/permission-records';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { PermissionReply } from './call-events';
import { BusinessLine, PermissionRequestBody, ProviderError, RemotePermission, WhatsAppProvider } from './provider-port';

export type PermissionState =
  | { allowed: true; permanent: boolean; expiresAt: Date | null }
  | { allowed: false; reason: 'none' | 'rejected' | 'expired'; since: Date | null };

/**
 * The answer before an agent's call: the local table's, or the provider's own view when the table has
 * no grant (Meta's GET /call_permissions). `detail` says precisely why not (quota used, until when);
 * `canRequest` false: a permission request would be refused now (do not spend one).
 */
export type CallPermission =
  | { allowed: true; source: 'local' | 'provider' }
  | { allowed: false; reason: 'none' | 'rejected' | 'expired'; detail: string | null; canRequest: boolean | null };

/** A temporary grant lasts 7 days when the reply does not say otherwise (Meta's documented default). */
const DEFAULT_GRANT_MS = 7 * 24 * 3600 * 1000;

/** Call permissions: every reply and request is kept; the latest reply decides, with expiry honoured. */
export class PermissionStore {
  constructor(private readonly db: PermissionRecords, private readonly log: Logger, private readonly metrics?: Metrics) {}

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

  /**
   * Before an agent's call: the local table is the fast path; without a grant there, the provider is
   * asked (when it can say: Meta), and a grant it knows of is recorded with its expiry. A provider that
   * cannot be reached leaves the local answer standing.
   */
  async checkBeforeCall(line: BusinessLine, provider: WhatsAppProvider, customer: string): Promise<CallPermission> {
    const local = await this.check(line.number, customer);
    if (local.allowed) return { allowed: true, source: 'local' };
    let remote: RemotePermission | null;
    try {
      remote = await provider.permissionState(line, customer);
    } catch (err) {
      this.log.warn({ err, customer }, 'could not read the call permission from the provider: the local table decides');
      return { allowed: false, reason: local.reason, detail: null, canRequest: null };
    }
    if (!remote) return { allowed: false, reason: local.reason, detail: null, canRequest: null };
    if (remote.status !== 'no_permission' && remote.canCall !== false) {
      const now = new Date();
      await this.db.addReply({
        businessNumber: line.number, customerNumber: customer, response: 'accept', isPermanent: remote.status === 'permanent',
        expiresAt: remote.status === 'permanent' ? null : remote.expiresAt, responseSource: 'provider_state', repliedAt: now, wamid: null,
        eventId: `provider-state:${line.number}:${customer}:${remote.status}:${remote.expiresAt?.getTime() ?? 'none'}`,
      });
      return { allowed: true, source: 'provider' };
    }
    return { allowed: false, reason: local.reason, detail: remoteDetail(remote), canRequest: remote.canRequest };
  }

  async list(filter: { businessNumber?: string; customerNumber?: string; limit?: number }): Promise<unknown[]> {
    return this.db.listReplies(filter);
  }

  /** Sends a call-permission request through the number's provider and records it (sent or failed). */
  async request(
    from: { line: BusinessLine; provider: WhatsAppProvider },
    customerNumber: string,
    body: PermissionRequestBody,
    trigger: 'api' | 'auto',
  ): Promise<{ messageId: string | null }> {
    const businessNumber = from.line.number;
    let messageId: string | null = null;
    let error: string | null = null;
    try {
      ({ messageId } = await from.provider.requestPermission(from.line, customerNumber, body));
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

/** Why the provider says no, in words an agent's phone can show (the SIP reason text). */
function remoteDetail(r: RemotePermission): string {
  const parts = [r.status === 'no_permission' ? 'the user has not granted it' : `a ${r.status} grant that does not allow a call now`];
  const q = r.requestQuota;
  if (r.canRequest === false && q) parts.push(`permission requests used ${q.used} of ${q.allowed} per ${q.period}${q.resetsAt ? ` until ${q.resetsAt.toISOString()}` : ''}`);
  else if (r.canRequest === false) parts.push('no permission request may be sent now');
  return parts.join('; ');
}

import { CallEvent, CallRef } from '../../calls/call-events';
import { BusinessLine, ConnectRequest, PermissionRequestBody, ProviderError, RemotePermission, WhatsAppProvider } from '../../calls/provider-port';
import { ParsedWebhook, SignatureCheck, WebhookSource } from '../../events/webhook-source';
import { Metrics } from '../../metrics/metrics';

/**
 * STUB, for branch h19-numbers only: the constructor signatures of the Meta adapter being written on
 * h19-meta (src/providers/meta/), so that src/numbers builds. Replaced by the real classes at merge.
 * Every request fails and every webhook is refused.
 */

const NOT_BUILT = 'the Meta adapter is not on this branch (src/providers/meta/index-stub.ts)';

export class MetaClient implements WhatsAppProvider {
  readonly name = 'Meta';

  constructor(readonly opts: { baseUrl: string; accessToken: string; authHeader: string; timeoutMs: number }, readonly metrics?: Metrics) {}

  private fail(): Promise<never> {
    return Promise.reject(new ProviderError(NOT_BUILT, this.name, null, null, null, null));
  }

  preAccept(_call: CallRef, _sdp: string): Promise<void> { return this.fail(); }
  accept(_call: CallRef, _sdp: string): Promise<void> { return this.fail(); }
  reject(_call: CallRef): Promise<void> { return this.fail(); }
  terminate(_call: CallRef): Promise<void> { return this.fail(); }
  connect(_call: ConnectRequest): Promise<{ wacid: string | null }> { return this.fail(); }
  requestPermission(_from: BusinessLine, _to: string, _body: PermissionRequestBody): Promise<{ messageId: string | null }> { return this.fail(); }
  permissionState(_from: BusinessLine, _to: string): Promise<RemotePermission | null> { return this.fail(); }
  fetchMedia(_from: BusinessLine, _media: { mediaId: string; url: string | null }): Promise<{ body: Buffer; mimeType: string }> { return this.fail(); }
  getCallingSettings(_line: BusinessLine): Promise<unknown> { return this.fail(); }
  updateCallingSettings(_line: BusinessLine, _settings: Record<string, unknown>): Promise<unknown> { return this.fail(); }
}

export class MetaWebhooks implements WebhookSource {
  readonly provider: string;
  readonly signatureHeader = 'X-Hub-Signature-256';

  constructor(readonly opts: { name: string; appSecret: string; verifyToken: string }) {
    this.provider = opts.name;
  }

  checkHeader(_header: string | undefined): SignatureCheck { return { ok: false, reason: NOT_BUILT }; }
  verify(_header: string | undefined, _raw: Buffer): SignatureCheck { return { ok: false, reason: NOT_BUILT }; }
  parse(_body: Buffer): ParsedWebhook { return { ok: false, reason: NOT_BUILT }; }
  decodeStored(_payload: unknown): CallEvent | null { return null; }
}

import { CallRef } from '../../calls/call-events';
import { CallingSettingsChange } from '../../calls/calling-settings';
import { BusinessLine, ConnectRequest, PermissionRequestBody, RemotePermission, WhatsAppProvider } from '../../calls/provider-port';
import { MetaSipBorder, SipNumber } from './border';

/**
 * A number in Meta's SIP mode behind the provider port: the call actions are SIP with Meta (through the
 * border), everything else is Graph as for any Meta number (permissions, messages, settings, media):
 * SIP mode stops only Graph's call actions.
 */
export class MetaSipProvider implements WhatsAppProvider {
  readonly name = 'Meta SIP';

  constructor(private readonly border: MetaSipBorder, private readonly graph: WhatsAppProvider, private readonly number: SipNumber) {}

  async preAccept(call: CallRef): Promise<void> {
    this.border.ringing(call);
  }

  accept(call: CallRef, sdpAnswer: string): Promise<void> {
    return this.border.answer(call, sdpAnswer);
  }

  async reject(call: CallRef): Promise<void> {
    this.border.refuse(call);
  }

  terminate(call: CallRef): Promise<void> {
    return this.border.end(call);
  }

  connect(c: ConnectRequest): Promise<{ wacid: string | null }> {
    return this.border.place({ ...this.number, line: { ...this.number.line, ...c.from } }, c);
  }

  requestPermission(from: BusinessLine, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }> {
    return this.graph.requestPermission(from, to, body);
  }

  permissionState(from: BusinessLine, to: string): Promise<RemotePermission | null> {
    return this.graph.permissionState(from, to);
  }

  fetchMedia(from: BusinessLine, media: { mediaId: string; url: string | null }): Promise<{ body: Buffer; mimeType: string }> {
    return this.graph.fetchMedia(from, media);
  }

  getCallingSettings(line: BusinessLine): Promise<unknown> {
    return this.graph.getCallingSettings(line);
  }

  updateCallingSettings(line: BusinessLine, change: CallingSettingsChange): Promise<unknown> {
    return this.graph.updateCallingSettings(line, change);
  }
}

import crypto from 'node:crypto';
import http from 'node:http';
import { signWebhook } from '../../providers/ycloud/signature';
import { CallView, Face, isRecord, Op, Outcome, SimError, SimEvent, str } from './face';
import { SimOp, SimPerson } from './types';

/** YCloud's paths (under /v2/whatsapp) and the engine's names for them. */
export const YCLOUD_PATHS: Record<string, SimOp> = {
  '/calls/connect': 'connect',
  '/calls/preAccept': 'pre_accept',
  '/calls/accept': 'accept',
  '/calls/reject': 'reject',
  '/calls/terminate': 'terminate',
  '/messages/sendDirectly': 'message',
};

const SETTINGS = /^\/phoneNumbers\/([^/]+)\/([^/]+)\/settings$/;
const MEDIA = /^\/calls\/media\/([^/]+)$/;

/**
 * YCloud's wire format: `/v2/whatsapp/calls/{connect,preAccept,accept,reject,terminate}` in camelCase,
 * `X-API-Key`, one event per webhook POST signed with `YCloud-Signature: t=,s=`.
 */
export class YCloudFace implements Face {
  readonly name = 'ycloud' as const;
  readonly basePath = '/v2';
  readonly signatureHeader = 'YCloud-Signature';
  private eventSeq = 0;

  constructor(private readonly apiKey: string) {}

  localPath(pathname: string): string {
    return pathname.replace(/^\/v2\/whatsapp/, '');
  }

  /** GET /v2/whatsapp/calls/media/{mediaAssetId}: the whole file. */
  mediaPath(mediaId: string): string {
    return `/v2/whatsapp/calls/media/${encodeURIComponent(mediaId)}`;
  }

  /** YCloud's media asset ids: 24 hex digits. */
  newMediaId(): string {
    return crypto.randomBytes(12).toString('hex');
  }

  parse(method: string, path: string, _query: URLSearchParams, body: Record<string, unknown>): Op {
    const media = MEDIA.exec(path);
    if (media && method === 'GET') return { op: 'media_download', mediaId: decodeURIComponent(media[1]!) };
    const settings = SETTINGS.exec(path);
    if (settings && (method === 'GET' || method === 'POST')) {
      const key = `${decodeURIComponent(settings[1]!)}/${decodeURIComponent(settings[2]!)}`;
      return { op: 'settings', key, update: method === 'POST' ? (isRecord(body.calling) ? body.calling : {}) : null };
    }
    if (method !== 'POST') return { op: 'not_found', message: `no ${method} /v2/whatsapp${path}` };
    const wacid = str(body.wacid) ?? '';
    switch (path) {
      case '/calls/preAccept':
        return { op: 'pre_accept', wacid, sdpType: body.sdpType, sdp: body.sdp, context: null };
      case '/calls/accept':
        return { op: 'accept', wacid, sdpType: body.sdpType, sdp: body.sdp, context: null };
      case '/calls/reject':
        return { op: 'reject', wacid };
      case '/calls/terminate':
        return { op: 'terminate', wacid };
      case '/calls/connect': {
        if (typeof body.from !== 'string' || typeof body.to !== 'string' || body.sdpType !== 'offer' || typeof body.sdp !== 'string') {
          return { op: 'invalid', message: 'from, to, sdpType=offer and sdp are required' };
        }
        return { op: 'connect', phoneId: null, from: body.from, to: body.to, recipient: null, sdp: body.sdp, context: null };
      }
      case '/messages/sendDirectly': {
        if (typeof body.from !== 'string' || typeof body.to !== 'string' || typeof body.type !== 'string') {
          return { op: 'invalid', message: 'from, to and type are required' };
        }
        const interactive = isRecord(body.interactive) ? body.interactive : null;
        const text = isRecord(interactive?.body) ? str(interactive.body.text) : null;
        return { op: 'message', phoneId: null, from: body.from, to: body.to, permissionRequest: body.type === 'interactive' && interactive?.type === 'call_permission_request', text: text ?? '' };
      }
      default:
        return { op: 'not_found', message: `no POST /v2/whatsapp${path}` };
    }
  }

  opOf(op: Op): SimOp {
    return op.op === 'invalid' || op.op === 'not_found' ? 'unknown' : op.op;
  }

  authorized(headers: http.IncomingHttpHeaders): boolean {
    return headers['x-api-key'] === this.apiKey;
  }

  unauthorized(): { status: number; body: unknown } {
    return { status: 401, body: errorBody(401, 'UNAUTHENTICATED', 'invalid API key') };
  }

  error(err: SimError): { status: number; body: unknown } {
    return { status: err.status, body: errorBody(err.status, err.code, err.message, err.whatsappCode) };
  }

  render(outcome: Outcome): unknown {
    switch (outcome.kind) {
      case 'success':
        return { success: true };
      case 'connected':
        return outcome.withWacid ? { wacid: outcome.wacid, id: crypto.randomUUID() } : { id: crypto.randomUUID() };
      case 'message_sent':
        return { id: `msg_${crypto.randomBytes(8).toString('hex')}`, status: 'accepted', wamid: outcome.wamid };
      case 'settings':
        return outcome.settings;
      default:
        throw new Error(`the YCloud face cannot answer with ${outcome.kind}`);
    }
  }

  defaultSettings(): Record<string, unknown> {
    return { calling: { status: 'DISABLED', iconVisibility: 'DEFAULT' } };
  }

  answerHeaders(): Record<string, string> {
    return { 'YCloud-Request-ID': crypto.randomUUID() };
  }

  /** A YCloud webhook event envelope around `payload`. */
  event(type: string, payload: Record<string, unknown>): Record<string, unknown> {
    return { id: `evt_${Date.now().toString(16)}${(++this.eventSeq).toString(16).padStart(6, '0')}`, type, apiVersion: 'v2', createTime: new Date().toISOString(), ...payload };
  }

  webhook(ev: SimEvent): Record<string, unknown> {
    switch (ev.kind) {
      case 'connect': {
        const { call } = ev;
        const [from, to] = ends(call);
        return this.event('whatsapp.call.connect', {
          callingConnect: { id: rid(), wacid: call.wacid, phoneId: call.phoneId, from, to, direction: call.direction, dialTime: ev.at, sdpType: ev.sdpType, sdp: ev.sdp },
        });
      }
      case 'status':
        return this.event('whatsapp.call.status.updated', {
          callingStatusUpdated: { wabaId: ev.call.wabaId, wacid: ev.call.wacid, status: ev.status, recipientPhone: numberOf(ev.call.person) },
        });
      case 'terminate': {
        const { call } = ev;
        const [from, to] = ends(call);
        return this.event('whatsapp.call.terminate', {
          callingTerminate: {
            id: rid(), wacid: call.wacid, phoneId: call.phoneId, from, to, direction: call.direction,
            startTime: ev.startTime, endTime: ev.endTime, duration: ev.durationS ?? 0, status: ev.status,
          },
        });
      }
      case 'permission_reply':
        return this.event('whatsapp.inbound_message.received', {
          whatsappInboundMessage: {
            id: rid(), wamid: `wamid.${crypto.randomBytes(12).toString('base64url')}`, wabaId: ev.wabaId,
            from: ev.request.customer, customerProfile: { name: ev.person.profileName ?? 'Sandbox user' }, to: ev.request.business, sendTime: new Date(ev.at).toISOString(),
            type: 'interactive',
            interactive: {
              type: 'call_permission_reply',
              call_permission_reply: {
                response: ev.accept ? 'accept' : 'reject', is_permanent: ev.permanent,
                ...(ev.expires ? { expiration_timestamp: String(Math.floor(ev.expires / 1000)) } : {}), response_source: 'user_action',
              },
            },
            context: { from: ev.request.business.replace(/^\+/, ''), id: ev.request.id },
          },
        });
      case 'media': {
        // YCloud names the asset only (no URL, type or checksum): the download answers with the file.
        if (ev.media === 'voicemail') throw new Error("the YCloud face has no voicemail webhook (Meta's face has)");
        const key = ev.media === 'recording' ? 'callingRecording' : 'callingTranscription';
        return this.event(`whatsapp.call.${ev.media}.updated`, {
          [key]: { wacid: ev.call.wacid, phoneId: ev.call.phoneId, mediaAssetId: ev.mediaId, status: 'AVAILABLE' },
        });
      }
      case 'account':
        throw new Error(`the YCloud face has no ${ev.kind} webhook (Meta's face has)`);
    }
  }

  sign(body: string, secret: string, timestamp?: number): string {
    return signWebhook(secret, body, timestamp);
  }

  webhookHeaders(): Record<string, string> {
    return { 'X-Webhook-Endpoint-ID': 'sim-endpoint' };
  }

  describe(payload: unknown): { type: string; wacid: string | null } {
    return { type: isRecord(payload) && typeof payload.type === 'string' ? payload.type : 'unknown', wacid: wacidOf(payload) };
  }

  deliveryIds(payload: unknown): string[] {
    return isRecord(payload) && payload.id !== undefined ? [String(payload.id)] : [];
  }
}

function rid(): string {
  return crypto.randomBytes(12).toString('hex');
}

function numberOf(p: SimPerson): string {
  if (!p.number) throw new Error(`the YCloud face needs a number for the WhatsApp user ${p.userId ?? '?'}`);
  return p.number;
}

/** [from, to] of a call as YCloud names them. */
function ends(call: CallView): [string, string] {
  const user = numberOf(call.person);
  return call.direction === 'USER_INITIATED' ? [user, call.business] : [call.business, user];
}

/** The wacid a webhook event is about, wherever its payload keeps it. */
function wacidOf(event: unknown): string | null {
  if (!isRecord(event)) return null;
  for (const v of Object.values(event)) {
    if (isRecord(v) && typeof v.wacid === 'string') return v.wacid;
  }
  return null;
}

function errorBody(status: number, code: string, message: string, whatsappCode?: number): unknown {
  return {
    error: {
      status, code, message, requestId: crypto.randomUUID(),
      ...(whatsappCode ? { whatsappApiError: { code: whatsappCode, message } } : {}),
    },
  };
}

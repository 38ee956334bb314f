import { signMetaWebhook } from '../../providers/meta/signature';
import crypto from 'node:crypto';
import http from 'node:http';
import { BSUID } from '../../calls/call-events';
import { CallView, Face, isRecord, Op, Outcome, SimError, SimEvent, str } from './face';
import { SimOp, SimPerson } from './types';

/** Meta's Graph API version the simulator's base URL names (any `/vNN.N` prefix is accepted). */
export const GRAPH_VERSION = 'v23.0';
/** Biz opaque callback data longer than this is refused, as Meta does. */
const MAX_CONTEXT = 512;

export interface MetaFaceOptions {
  accessToken: string;
  /** `Authorization` (value `Bearer <token>`), or another header carrying the raw token (360dialog's `D360-API-KEY`). */
  authHeader: string;
}

/**
 * Meta's Graph wire format: `POST /{phoneId}/calls` with `action` and a snake_case `session`, Graph errors
 * `{error:{message,type,code,error_subcode,fbtrace_id}}`, webhooks in the `whatsapp_business_account`
 * envelope with digits-only numbers and unix-second string timestamps, signed `X-Hub-Signature-256`.
 */
export class MetaFace implements Face {
  readonly name = 'meta' as const;
  readonly basePath = `/${GRAPH_VERSION}`;
  readonly signatureHeader = 'X-Hub-Signature-256';

  constructor(private readonly opts: MetaFaceOptions) {}

  localPath(pathname: string): string {
    return pathname.replace(/^\/v\d+(\.\d+)?(?=\/)/, '');
  }

  /** The file itself is on another path than the Graph API's media object (GET /{mediaId} gives its URL). */
  mediaPath(mediaId: string): string {
    return `/media-download/${encodeURIComponent(mediaId)}`;
  }

  /** Graph media ids are decimal. */
  newMediaId(): string {
    return String(BigInt(`0x${crypto.randomBytes(7).toString('hex')}`));
  }

  parse(method: string, path: string, query: URLSearchParams, body: Record<string, unknown>): Op {
    const seg = path.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
    if (method === 'GET' && seg.length === 2 && seg[0] === 'media-download') return { op: 'media_download', mediaId: seg[1]! };
    if (method === 'GET' && seg.length === 1) return { op: 'media', mediaId: seg[0]! };
    if (seg.length !== 2) return notFound(method, path);
    const [phoneId, edge] = seg as [string, string];
    if (edge === 'settings' && method === 'GET') {
      return { op: 'settings', key: phoneId, update: null, credentials: query.get('include_sip_credentials') === 'true' };
    }
    if (edge === 'settings' && method === 'POST') {
      const calling = isRecord(body.calling) ? body.calling : {};
      const problem = sipSettingsProblem(calling);
      return problem ? { op: 'invalid', message: problem } : { op: 'settings', key: phoneId, update: calling };
    }
    if (edge === 'call_permissions' && method === 'GET') {
      const waId = query.get('user_wa_id');
      const recipient = query.get('recipient');
      if (waId) return /^\d{6,15}$/.test(waId) ? { op: 'call_permissions', phoneId, to: `+${waId}` } : { op: 'invalid', message: 'user_wa_id must be digits' };
      if (recipient) return BSUID.test(recipient) ? { op: 'call_permissions', phoneId, to: recipient } : { op: 'invalid', message: 'recipient must be a business-scoped user id' };
      return { op: 'invalid', message: 'user_wa_id or recipient is required' };
    }
    if (method !== 'POST') return notFound(method, path);
    if (body.messaging_product !== 'whatsapp') return { op: 'invalid', message: '(#100) The parameter messaging_product is required and must be "whatsapp".' };
    if (edge === 'calls') return this.callAction(phoneId, body);
    if (edge === 'messages') return this.message(phoneId, body);
    return notFound(method, path);
  }

  private callAction(phoneId: string, body: Record<string, unknown>): Op {
    const context = body.biz_opaque_callback_data;
    if (context !== undefined && (typeof context !== 'string' || context.length > MAX_CONTEXT)) {
      return { op: 'invalid', message: `biz_opaque_callback_data must be a string of at most ${MAX_CONTEXT} characters` };
    }
    const session = isRecord(body.session) ? body.session : {};
    switch (body.action) {
      case 'connect': {
        const to = addressParam(body.to, 'digits');
        const recipient = addressParam(body.recipient, 'bsuid');
        if (to === undefined || recipient === undefined) return { op: 'invalid', message: 'to must be digits (no +) and recipient a business-scoped user id' };
        if (!to && !recipient) return { op: 'invalid', message: 'to or recipient is required' };
        if (session.sdp_type !== 'offer' || typeof session.sdp !== 'string') return { op: 'invalid', message: 'session {sdp_type: "offer", sdp} is required' };
        return { op: 'connect', phoneId, from: null, to, recipient, sdp: session.sdp, context: str(context) };
      }
      case 'pre_accept':
      case 'accept':
        if (typeof body.call_id !== 'string') return { op: 'invalid', message: 'call_id is required' };
        return { op: body.action, wacid: body.call_id, sdpType: session.sdp_type, sdp: session.sdp, context: str(context) };
      case 'reject':
      case 'terminate':
        if (typeof body.call_id !== 'string') return { op: 'invalid', message: 'call_id is required' };
        return { op: body.action, wacid: body.call_id };
      default:
        return { op: 'invalid', message: `unknown action ${JSON.stringify(body.action)}` };
    }
  }

  private message(phoneId: string, body: Record<string, unknown>): Op {
    const to = addressParam(body.to, 'digits');
    const recipient = addressParam(body.recipient, 'bsuid');
    if (to === undefined || recipient === undefined) return { op: 'invalid', message: 'to must be digits (no +) and recipient a business-scoped user id' };
    const address = to ?? recipient;
    if (!address || typeof body.type !== 'string') return { op: 'invalid', message: 'to (or recipient) and type are required' };
    const interactive = isRecord(body.interactive) ? body.interactive : null;
    const template = isRecord(body.template) ? body.template : null;
    if (body.type === 'interactive' && interactive?.type === 'call_permission_request') {
      const action = isRecord(interactive.action) ? interactive.action : null;
      if (action?.name !== 'call_permission_request') return { op: 'invalid', message: 'interactive.action.name must be call_permission_request' };
      const text = isRecord(interactive.body) ? str(interactive.body.text) : null;
      return { op: 'message', phoneId, from: null, to: address, permissionRequest: true, text: text ?? '' };
    }
    if (body.type === 'template') {
      if (!template || typeof template.name !== 'string') return { op: 'invalid', message: 'template.name is required' };
      const components = Array.isArray(template.components) ? template.components : [];
      const asks = components.some((c) => isRecord(c) && c.type === 'call_permission_request');
      return { op: 'message', phoneId, from: null, to: address, permissionRequest: asks, text: template.name };
    }
    return { op: 'message', phoneId, from: null, to: address, permissionRequest: false, text: '' };
  }

  opOf(op: Op): SimOp {
    return op.op === 'invalid' || op.op === 'not_found' ? 'unknown' : op.op;
  }

  authorized(headers: http.IncomingHttpHeaders): boolean {
    const name = this.opts.authHeader.toLowerCase();
    const value = headers[name];
    const want = name === 'authorization' ? `Bearer ${this.opts.accessToken}` : this.opts.accessToken;
    return typeof value === 'string' && value.length === want.length && crypto.timingSafeEqual(Buffer.from(value), Buffer.from(want));
  }

  unauthorized(): { status: number; body: unknown } {
    return { status: 401, body: graphError('Invalid OAuth access token - Cannot parse access token', 190) };
  }

  error(err: SimError): { status: number; body: unknown } {
    const code = err.whatsappCode ?? graphCode(err);
    const subcode = err.subcode ?? (err.code === 'NOT_FOUND' ? 33 : undefined);
    return { status: err.status, body: graphError(err.message, code, subcode) };
  }

  render(outcome: Outcome): unknown {
    switch (outcome.kind) {
      case 'success':
        return { success: true };
      case 'connected':
        return { messaging_product: 'whatsapp', calls: outcome.withWacid ? [{ id: outcome.wacid }] : [] };
      case 'message_sent':
        return {
          messaging_product: 'whatsapp',
          contacts: [outcome.to.startsWith('+') ? { input: digits(outcome.to), wa_id: digits(outcome.to) } : { input: outcome.to, user_id: outcome.to }],
          messages: [{ id: outcome.wamid }],
        };
      case 'permissions':
        return { messaging_product: 'whatsapp', ...outcome.view };
      case 'settings':
        return outcome.settings;
      case 'media':
        return { messaging_product: 'whatsapp', url: outcome.url, mime_type: outcome.mimeType, sha256: outcome.sha256, file_size: outcome.size, id: outcome.mediaId };
      case 'bytes':
        throw new Error('bytes are written by the engine');
    }
  }

  defaultSettings(): Record<string, unknown> {
    return {
      calling: {
        status: 'DISABLED', call_icon_visibility: 'DEFAULT', callback_permission_status: 'DISABLED',
        srtp_key_exchange_protocol: 'DTLS', sip: { status: 'DISABLED', servers: [] },
      },
    };
  }

  answerHeaders(): Record<string, string> {
    return { 'x-fb-trace-id': fbtrace() };
  }

  webhook(ev: SimEvent): Record<string, unknown> {
    switch (ev.kind) {
      case 'connect': {
        const { call } = ev;
        return this.callsChange(call, {
          calls: [{
            id: call.wacid, ...ends(call), event: 'connect', direction: call.direction, timestamp: unix(ev.at),
            session: { sdp_type: ev.sdpType, sdp: ev.sdp },
            ...(call.ctaPayload ? { cta_payload: call.ctaPayload } : {}),
            ...(call.deeplinkPayload ? { deeplink_payload: call.deeplinkPayload } : {}),
            ...(call.context ? { biz_opaque_callback_data: call.context } : {}),
          }],
        });
      }
      case 'status': {
        const { call } = ev;
        const p = call.person;
        return this.callsChange(call, {
          statuses: [{
            id: call.wacid, type: 'call', status: ev.status, timestamp: unix(ev.at),
            ...(p.number ? { recipient_id: digits(p.number) } : {}), ...(p.userId ? { recipient_user_id: p.userId } : {}),
            ...(call.context ? { biz_opaque_callback_data: call.context } : {}),
          }],
        }, false);
      }
      case 'terminate': {
        const { call } = ev;
        return this.callsChange(call, {
          calls: [{
            id: call.wacid, ...ends(call), event: 'terminate', direction: call.direction, timestamp: unix(ev.at), status: ev.status,
            start_time: unix(ev.startTime), end_time: unix(ev.endTime),
            ...(ev.durationS !== null ? { duration: ev.durationS } : {}),
            ...(call.context ? { biz_opaque_callback_data: call.context } : {}),
          }],
        });
      }
      case 'permission_reply': {
        const p = ev.person;
        return envelope(ev.wabaId, 'messages', {
          ...this.valueBase(ev.phoneId, ev.request.business),
          contacts: contacts(p),
          messages: [{
            ...userFrom(p), id: `wamid.${crypto.randomBytes(12).toString('base64url')}`, timestamp: unix(ev.at), type: 'interactive',
            interactive: {
              type: 'call_permission_reply',
              call_permission_reply: {
                response: ev.accept ? 'accept' : 'reject', is_permanent: ev.permanent,
                ...(ev.expires ? { expiration_timestamp: unix(ev.expires) } : {}), response_source: 'user_action',
              },
            },
            context: { from: digits(ev.request.business), id: ev.request.id },
          }],
        });
      }
      case 'media': {
        const { call } = ev;
        const file = { id: ev.mediaId, mime_type: ev.mimeType, sha256: ev.sha256, ...(ev.url ? { url: ev.url } : {}) };
        if (ev.media === 'voicemail') {
          // Voicemail is an audio message whose id is the missed call's wacid.
          return envelope(call.wabaId, 'messages', {
            ...this.valueBase(call.phoneId, call.business),
            contacts: contacts(call.person),
            messages: [{ ...userFrom(call.person), id: call.wacid, timestamp: unix(ev.at), type: 'audio', audio: { ...file, voice: true } }],
          });
        }
        return this.callsChange(call, {
          calls: [{
            id: call.wacid, ...ends(call), event: `call_${ev.media}_available`, direction: call.direction, timestamp: unix(ev.at),
            [ev.media]: file,
            ...(call.context ? { biz_opaque_callback_data: call.context } : {}),
          }],
        });
      }
      case 'account':
        return { object: 'whatsapp_business_account', entry: [{ id: ev.wabaId, time: Math.floor(ev.at / 1000), changes: [{ field: ev.field, value: ev.value }] }] };
    }
  }

  private valueBase(phoneId: string, business: string): Record<string, unknown> {
    return { messaging_product: 'whatsapp', metadata: { display_phone_number: digits(business), phone_number_id: phoneId } };
  }

  private callsChange(call: CallView, value: Record<string, unknown>, withContacts = true): Record<string, unknown> {
    return envelope(call.wabaId, 'calls', { ...this.valueBase(call.phoneId, call.business), ...(withContacts ? { contacts: contacts(call.person) } : {}), ...value });
  }

  /** Several webhook bodies as one POST: entries of one WABA merged, their changes in order. */
  batch(payloads: Record<string, unknown>[]): Record<string, unknown> {
    const entries: Array<Record<string, unknown> & { changes: unknown[] }> = [];
    for (const p of payloads) {
      for (const e of entriesOf(p)) {
        const same = entries.find((x) => x.id === e.id && x.time === e.time);
        if (same) same.changes.push(...changesOf(e));
        else entries.push({ ...e, changes: [...changesOf(e)] });
      }
    }
    return { object: 'whatsapp_business_account', entry: entries };
  }

  sign(body: string, secret: string): string {
    return signMetaWebhook(secret, body);
  }

  webhookHeaders(): Record<string, string> {
    return { 'User-Agent': 'facebookexternalua' };
  }

  describe(payload: unknown): { type: string; wacid: string | null } {
    const types: string[] = [];
    let wacid: string | null = null;
    for (const e of entriesOf(payload)) {
      for (const c of changesOf(e)) {
        if (!isRecord(c) || !isRecord(c.value)) continue;
        const field = String(c.field);
        const v = c.value;
        for (const x of arr(v.calls)) {
          types.push(`${field}:${String(x.event)}`);
          wacid ??= str(x.id);
        }
        for (const x of arr(v.statuses)) {
          types.push(`statuses:${String(x.status)}`);
          wacid ??= str(x.id);
        }
        for (const x of arr(v.messages)) {
          const t = isRecord(x.interactive) ? String(x.interactive.type) : String(x.type);
          types.push(`messages:${t}`);
          if (typeof x.id === 'string' && x.id.startsWith('wacid.')) wacid ??= x.id;
        }
        if (!v.calls && !v.statuses && !v.messages) types.push(`${field}${typeof v.event === 'string' ? `:${v.event}` : ''}`);
      }
    }
    return { type: types.join(', ') || 'unknown', wacid };
  }

  deliveryIds(payload: unknown): string[] {
    const ids: string[] = [];
    for (const e of entriesOf(payload)) {
      for (const c of changesOf(e)) {
        if (!isRecord(c) || !isRecord(c.value)) continue;
        const v = c.value;
        for (const x of arr(v.calls)) ids.push(`meta:${String(x.id)}:${String(x.event)}:${String(x.timestamp)}`);
        for (const x of arr(v.statuses)) ids.push(`meta:${String(x.id)}:${String(x.status)}`);
        for (const x of arr(v.messages)) ids.push(`meta:${String(x.id)}`);
        if (!v.calls && !v.statuses && !v.messages) {
          const sha8 = crypto.createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 8);
          ids.push(`meta:${String(c.field)}:${String(e.id)}:${String(e.time)}:${sha8}`);
        }
      }
    }
    return ids;
  }
}

/** What Meta refuses in the SIP part of a settings change (one server with hostname and port, known enums, G.711 codecs only). */
function sipSettingsProblem(calling: Record<string, unknown>): string | null {
  const { sip, srtp_key_exchange_protocol: srtp, audio } = calling;
  if (sip !== undefined) {
    if (!isRecord(sip)) return '(#100) Param calling[sip] must be an object';
    if (sip.status !== undefined && sip.status !== 'ENABLED' && sip.status !== 'DISABLED') return '(#100) Param calling[sip][status] must be one of {ENABLED, DISABLED}';
    if (sip.webhook_delivery !== undefined && sip.webhook_delivery !== 'ENABLED' && sip.webhook_delivery !== 'DISABLED') {
      return '(#100) Param calling[sip][webhook_delivery] must be one of {ENABLED, DISABLED}';
    }
    if (sip.servers !== undefined) {
      if (!Array.isArray(sip.servers) || sip.servers.length > 1) return '(#100) Param calling[sip][servers] must be an array of at most 1 server';
      for (const server of sip.servers as unknown[]) {
        if (!isRecord(server) || typeof server.hostname !== 'string' || !server.hostname) return '(#100) Param calling[sip][servers][0][hostname] is required';
        const port = server.port ?? 5061;
        if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return '(#100) Param calling[sip][servers][0][port] must be a port number';
      }
    }
  }
  if (srtp !== undefined && srtp !== 'DTLS' && srtp !== 'SDES') return '(#100) Param calling[srtp_key_exchange_protocol] must be one of {DTLS, SDES}';
  if (audio !== undefined) {
    const codecs = isRecord(audio) ? audio.additional_codecs : undefined;
    if (!Array.isArray(codecs) || codecs.some((c) => c !== 'PCMA' && c !== 'PCMU')) return '(#100) Param calling[audio][additional_codecs] must be an array of PCMA, PCMU';
  }
  return null;
}

function notFound(method: string, path: string): Op {
  return { op: 'not_found', message: `Unsupported ${method.toLowerCase()} request. Object with ID '${path.split('/').filter(Boolean)[0] ?? ''}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.` };
}

/** A `to` (digits) or `recipient` (BSUID) parameter: the address, null when absent, undefined when malformed. */
function addressParam(v: unknown, kind: 'digits' | 'bsuid'): string | null | undefined {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v !== 'string') return undefined;
  if (kind === 'digits') return /^\d{6,15}$/.test(v) ? `+${v}` : undefined;
  return BSUID.test(v) ? v : undefined;
}

function graphCode(err: SimError): number {
  if (err.code === 'UNAUTHENTICATED') return 190;
  if (err.status === 429) return 130429;
  if (err.status >= 500) return 131000;
  if (err.code === 'INVALID_ARGUMENT' || err.code === 'NOT_FOUND' || err.code === 'FAILED_PRECONDITION') return 100;
  return 131000;
}

function graphError(message: string, code: number, subcode?: number): unknown {
  return {
    error: {
      message, type: code === 190 ? 'OAuthException' : code >= 130000 ? 'OAuthException' : 'GraphMethodException', code,
      ...(subcode !== undefined ? { error_subcode: subcode } : {}),
      error_data: { messaging_product: 'whatsapp', details: message },
      fbtrace_id: fbtrace(),
    },
  };
}

function fbtrace(): string {
  return crypto.randomBytes(9).toString('base64url');
}

function envelope(wabaId: string, field: string, value: Record<string, unknown>): Record<string, unknown> {
  return { object: 'whatsapp_business_account', entry: [{ id: wabaId, changes: [{ field, value }] }] };
}

function contacts(p: SimPerson): unknown[] {
  return [{
    ...(p.number ? { wa_id: digits(p.number) } : {}),
    ...(p.userId ? { user_id: p.userId } : {}),
    profile: { name: p.profileName ?? '', ...(p.username ? { username: p.username } : {}) },
  }];
}

function userFrom(p: SimPerson): Record<string, string> {
  return { ...(p.number ? { from: digits(p.number) } : {}), ...(p.userId ? { from_user_id: p.userId } : {}) };
}

/** from/to (and the user's BSUID) of a call, as Meta names them. */
function ends(call: CallView): Record<string, string> {
  const p = call.person;
  const biz = digits(call.business);
  if (call.direction === 'USER_INITIATED') return { ...userFrom(p), to: biz };
  return { from: biz, ...(p.number ? { to: digits(p.number) } : {}), ...(p.userId ? { to_user_id: p.userId } : {}) };
}

function digits(e164: string): string {
  return e164.replace(/^\+/, '');
}

function unix(ms: number): string {
  return String(Math.floor(ms / 1000));
}

function arr(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.filter(isRecord) : [];
}

function entriesOf(payload: unknown): Array<Record<string, unknown>> {
  return isRecord(payload) ? arr(payload.entry) : [];
}

function changesOf(entry: Record<string, unknown>): unknown[] {
  return Array.isArray(entry.changes) ? entry.changes : [];
}


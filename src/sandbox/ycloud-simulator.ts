import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { signWebhook } from '../providers/ycloud/signature';

/** What a simulated WhatsApp user's phone must offer the simulator. */
export interface SimUser {
  createOffer(): Promise<string>;
  applyAnswer(sdp: string): Promise<void>;
}

export interface SimRequest { path: string; body: Record<string, unknown>; at: number }
/** An API call as answered: what the sandbox's timeline shows. */
export interface SimApiCall { method: string; path: string; body: Record<string, unknown>; status: number; response: unknown; at: number }
/** A webhook as delivered, with the bridge's HTTP status. */
export interface SimWebhook { type: string; wacid: string | null; event: unknown; status: number; at: number }
/** A call permission request the business sent (messages/sendDirectly, interactive call_permission_request). */
export interface SimPermissionRequest { id: string; business: string; customer: string; text: string }
/** What the WhatsApp user answers to a permission request: 7 days, permanently, or no. */
export type PermissionChoice = 'temporary' | 'permanent' | 'decline';
/** A simulated user's call changed state (user-initiated calls; `ended` for both directions). */
export type SimCallState = 'pre_accepted' | 'accepted' | 'ended';
interface SimCall {
  wacid: string;
  phoneId: string;
  from: string;
  to: string;
  user: SimUser;
  state: 'ringing' | 'pre_accepted' | 'accepted' | 'ended';
  answerApplied: boolean;
  acceptRespondedAt: number | null;
  startTime: number;
}
/** A business-initiated call as the simulator sees it; tests script what the WhatsApp user does. */
export interface SimOutboundCall { wacid: string; phoneId: string; from: string; to: string; offer: string }
export type OutboundScript = (call: SimOutboundCall) => Promise<void>;

/** `location`: with a 3xx status, the redirect's Location (the request is not acted on). */
export interface Fault { status: number; code?: string; message?: string; whatsappCode?: number; delayMs?: number; location?: string }

/**
 * A stand-in for YCloud: a real HTTP server implementing the calling endpoints of the reference, and
 * a sender of signed webhooks to the bridge. Faults (errors, delays) can be set per endpoint.
 */
export class YCloudSim extends EventEmitter {
  readonly requests: SimRequest[] = [];
  private readonly calls = new Map<string, SimCall>();
  private readonly faults = new Map<string, Fault[]>();
  private readonly delays = new Map<string, number>();
  private server: http.Server | null = null;
  private eventSeq = 0;
  webhookUrl = '';
  /** What the WhatsApp user does when the business calls; runs after calls/connect has been answered. */
  outboundScript: OutboundScript | null = null;
  /** Whether calls/connect's response names the wacid (else only the connect webhook does). */
  connectReturnsWacid = true;
  /** Runs before calls/connect is answered, e.g. to deliver webhooks that overtake the response. */
  beforeConnectResponse: OutboundScript | null = null;
  /** Customers who gave the business no call permission: calls/connect fails with 138006. */
  readonly noPermission = new Set<string>();
  readonly settings = new Map<string, Record<string, unknown>>();
  /**
   * Whether calls/connect needs the customer's permission as WhatsApp does (the sandbox): given by
   * answerPermission() or grant(), temporary grants expire after 7 days. Off in tests, which use `noPermission`.
   */
  enforcePermissions = false;
  /** Per customer number: when the grant ends (null: permanent). Declined or never asked: absent. */
  private readonly grants = new Map<string, number | null>();
  private readonly permissionRequests = new Map<string, SimPermissionRequest>();
  readonly outboundCalls = new Map<string, SimOutboundCall & { ended: boolean; accepted: boolean }>();
  /** When each outbound call's ACCEPTED webhook was delivered (performance.now()). */
  readonly acceptedDeliveredAt = new Map<string, number>();

  constructor(readonly apiKey: string, readonly secret: string) {
    super();
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/v2`;
  }

  async start(port = 0, host = '127.0.0.1'): Promise<void> {
    this.server = http.createServer((req, res) => void this.onRequest(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, resolve);
    });
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** The next call(s) to `path` (e.g. "/calls/accept") fail or are delayed as described. */
  failNext(path: string, fault: Fault): void {
    const list = this.faults.get(path) ?? [];
    list.push(fault);
    this.faults.set(path, list);
  }

  /** Every call to `path` is answered only after `ms` (0 clears it). */
  delay(path: string, ms: number): void {
    if (ms) this.delays.set(path, ms);
    else this.delays.delete(path);
  }

  requestsFor(wacid: string): SimRequest[] {
    return this.requests.filter((r) => r.body.wacid === wacid);
  }

  /** Resolves with the first request to `path` for this wacid (already seen, or the next one). */
  waitForRequest(path: string, wacid: string): Promise<SimRequest> {
    const seen = this.requests.find((r) => r.path === path && r.body.wacid === wacid);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const on = (r: SimRequest) => {
        if (r.path === path && r.body.wacid === wacid) {
          this.off('request', on);
          resolve(r);
        }
      };
      this.on('request', on);
    });
  }

  acceptRespondedAt(wacid: string): number | null {
    return this.calls.get(wacid)?.acceptRespondedAt ?? null;
  }

  /** A WhatsApp user calls the business: sends the connect webhook with the user's offer. */
  async userCalls(user: SimUser, opts: { from?: string; to?: string; phoneId?: string; offer?: string; wacid?: string } = {}): Promise<{ wacid: string; eventId: string; status: number }> {
    const wacid = opts.wacid ?? newWacid();
    const call: SimCall = {
      wacid,
      phoneId: opts.phoneId ?? '461269257068831',
      from: opts.from ?? '+6281361905133',
      to: opts.to ?? '+6283138205150',
      user,
      state: 'ringing',
      answerApplied: false,
      acceptRespondedAt: null,
      startTime: Date.now(),
    };
    this.calls.set(wacid, call);
    const sdp = opts.offer ?? (await user.createOffer());
    const event = this.event('whatsapp.call.connect', {
      callingConnect: {
        id: crypto.randomBytes(12).toString('hex'), wacid, phoneId: call.phoneId, from: call.from, to: call.to,
        direction: 'USER_INITIATED', dialTime: Date.now(), sdpType: 'offer', sdp,
      },
    });
    const status = await this.deliver(event);
    return { wacid, eventId: String(event.id), status };
  }

  /** The user hangs up (or WhatsApp ends the call): the terminate webhook. */
  async userHangsUp(wacid: string): Promise<number> {
    const call = this.calls.get(wacid);
    if (!call || call.state === 'ended') throw new Error(`no live call ${wacid}`);
    return this.terminateWebhook(call, call.state === 'accepted' ? 'COMPLETED' : 'FAILED');
  }

  /** Builds a webhook event envelope. */
  event(type: string, payload: Record<string, unknown>): Record<string, unknown> {
    return { id: `evt_${Date.now().toString(16)}${(++this.eventSeq).toString(16).padStart(6, '0')}`, type, apiVersion: 'v2', createTime: new Date().toISOString(), ...payload };
  }

  /** Posts an event to the bridge, signed unless told otherwise. Returns the HTTP status. */
  async deliver(event: unknown, opts: { signature?: string | null; raw?: string; secret?: string; timestamp?: number } = {}): Promise<number> {
    const body = opts.raw ?? JSON.stringify(event);
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'X-Webhook-Endpoint-ID': 'sim-endpoint' };
    const sig = opts.signature === undefined ? signWebhook(opts.secret ?? this.secret, body, opts.timestamp) : opts.signature;
    if (sig !== null) headers['YCloud-Signature'] = sig;
    const res = await fetch(this.webhookUrl, { method: 'POST', headers, body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
    await res.arrayBuffer();
    this.emit('webhook', { type: typeOf(event), wacid: wacidOf(event), event, status: res.status, at: Date.now() } satisfies SimWebhook);
    return res.status;
  }

  /**
   * The customer answers a permission request: the reply webhook, as WhatsApp sends it. With
   * enforcePermissions, a grant lets calls/connect to this customer through (for 7 days, or for good).
   */
  async answerPermission(id: string, choice: PermissionChoice): Promise<number> {
    const request = this.permissionRequests.get(id);
    if (!request) throw new Error(`no permission request ${id}`);
    this.permissionRequests.delete(id);
    const now = Date.now();
    const expires = choice === 'temporary' ? now + PERMISSION_GRANT_MS : null;
    if (choice === 'decline') this.grants.delete(request.customer);
    else this.grants.set(request.customer, expires);
    return this.deliver(this.event('whatsapp.inbound_message.received', {
      whatsappInboundMessage: {
        id: crypto.randomBytes(12).toString('hex'), wamid: `wamid.${crypto.randomBytes(12).toString('base64url')}`, wabaId: '188234691048809',
        from: request.customer, customerProfile: { name: 'Sandbox user' }, to: request.business, sendTime: new Date(now).toISOString(),
        type: 'interactive',
        interactive: {
          type: 'call_permission_reply',
          call_permission_reply: {
            response: choice === 'decline' ? 'reject' : 'accept', is_permanent: choice === 'permanent',
            ...(expires ? { expiration_timestamp: String(Math.floor(expires / 1000)) } : {}), response_source: 'user_action',
          },
        },
        context: { from: request.business.replace(/^\+/, ''), id: request.id },
      },
    }));
  }

  /** Records a permission the customer gave before (until: ms since epoch, or null for permanent). */
  grant(customer: string, until: number | null): void {
    this.grants.set(customer, until);
  }

  /** Whether calls/connect to `customer` is allowed now (enforcePermissions). */
  private permitted(customer: string): boolean {
    if (!this.grants.has(customer)) return false;
    const until = this.grants.get(customer);
    return until === null || (until !== undefined && until > Date.now());
  }

  private async terminateWebhook(call: SimCall, status: 'COMPLETED' | 'FAILED'): Promise<number> {
    call.state = 'ended';
    this.emit('call-state', call.wacid, 'ended' satisfies SimCallState);
    const end = Date.now();
    return this.deliver(this.event('whatsapp.call.terminate', {
      callingTerminate: {
        id: crypto.randomBytes(12).toString('hex'), wacid: call.wacid, phoneId: call.phoneId, from: call.from, to: call.to,
        direction: 'USER_INITIATED', startTime: call.startTime, endTime: end, duration: Math.round((end - call.startTime) / 1000), status,
      },
    }));
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname.replace(/^\/v2\/whatsapp/, '');
    let body: Record<string, unknown> = {};
    try {
      body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
    } catch {
      return this.reply(res, 400, errorBody(400, 'INVALID_ARGUMENT', 'body is not JSON'));
    }
    const record: SimRequest = { path, body, at: performance.now() };
    const method = req.method ?? 'GET';
    res.once('finish', () => this.emit('api', { method, path, body, status: res.statusCode, response: answered.get(res) ?? null, at: Date.now() } satisfies SimApiCall));
    this.requests.push(record);
    this.emit('request', record);
    if (req.headers['x-api-key'] !== this.apiKey) return this.reply(res, 401, errorBody(401, 'UNAUTHENTICATED', 'invalid API key'));
    const delay = this.delays.get(path) ?? 0;
    const fault = this.faults.get(path)?.shift();
    if (delay || fault?.delayMs) await new Promise((r) => setTimeout(r, delay + (fault?.delayMs ?? 0)));
    if (fault && fault.status >= 300 && fault.status < 400) {
      res.writeHead(fault.status, { Location: fault.location ?? '/', 'YCloud-Request-ID': crypto.randomUUID() });
      res.end();
      return;
    }
    if (fault && fault.status >= 400) {
      return this.reply(res, fault.status, errorBody(fault.status, fault.code ?? 'FAILED', fault.message ?? 'simulated failure', fault.whatsappCode));
    }
    if (req.method !== 'POST' && !path.endsWith('/settings')) return this.reply(res, 404, errorBody(404, 'NOT_FOUND', `no ${req.method} ${url.pathname}`));
    const call = typeof body.wacid === 'string' ? this.calls.get(body.wacid) : undefined;
    switch (path) {
      case '/calls/preAccept':
      case '/calls/accept': {
        if (!call) return this.reply(res, 404, errorBody(404, 'NOT_FOUND', 'unknown wacid'));
        if (call.state === 'ended') return this.reply(res, 400, errorBody(400, 'FAILED_PRECONDITION', 'call already ended', 138004));
        if (body.sdpType !== 'answer' || typeof body.sdp !== 'string' || !body.sdp.startsWith('v=0')) {
          return this.reply(res, 400, errorBody(400, 'INVALID_ARGUMENT', 'sdp answer required'));
        }
        if (!call.answerApplied) {
          call.answerApplied = true;
          await call.user.applyAnswer(body.sdp);
        }
        if (path === '/calls/accept') {
          call.state = 'accepted';
          call.acceptRespondedAt = performance.now();
        } else call.state = 'pre_accepted';
        this.reply(res, 200, { success: true });
        this.emit('call-state', call.wacid, call.state satisfies SimCallState);
        return;
      }
      case '/calls/reject':
      case '/calls/terminate': {
        const out = typeof body.wacid === 'string' ? this.outboundCalls.get(body.wacid) : undefined;
        if (out) {
          if (out.ended) return this.reply(res, 400, errorBody(400, 'FAILED_PRECONDITION', 'call already ended'));
          this.reply(res, 200, { success: true });
          this.emit('call-state', out.wacid, 'ended' satisfies SimCallState);
          setImmediate(() => void this.deliver(this.outboundTerminate(out, out.accepted ? 'COMPLETED' : 'FAILED')).catch(() => undefined));
          return;
        }
        if (!call) return this.reply(res, 404, errorBody(404, 'NOT_FOUND', 'unknown wacid'));
        if (call.state === 'ended') return this.reply(res, 400, errorBody(400, 'FAILED_PRECONDITION', 'call already ended'));
        const completed = call.state === 'accepted';
        this.reply(res, 200, { success: true });
        // WhatsApp confirms every end with a terminate webhook.
        setImmediate(() => void this.terminateWebhook(call, completed ? 'COMPLETED' : 'FAILED').catch(() => undefined));
        return;
      }
      case '/calls/connect': {
        if (typeof body.from !== 'string' || typeof body.to !== 'string' || body.sdpType !== 'offer' || typeof body.sdp !== 'string') {
          return this.reply(res, 400, errorBody(400, 'INVALID_ARGUMENT', 'from, to, sdpType=offer and sdp are required'));
        }
        if (this.noPermission.has(body.to) || (this.enforcePermissions && !this.permitted(body.to))) {
          return this.reply(res, 400, errorBody(400, 'WHATSAPP_ERROR', 'No approved call permission from the recipient', 138006));
        }
        const out = { wacid: newWacid(), phoneId: '461269257068831', from: body.from, to: body.to, offer: body.sdp, ended: false, accepted: false };
        this.outboundCalls.set(out.wacid, out);
        if (this.beforeConnectResponse) await this.beforeConnectResponse(out);
        this.reply(res, 200, this.connectReturnsWacid ? { wacid: out.wacid, id: crypto.randomUUID() } : { id: crypto.randomUUID() });
        const script = this.outboundScript;
        if (script) setImmediate(() => void script(out).catch((err: unknown) => this.emit('script-error', err)));
        return;
      }
      case '/messages/sendDirectly': {
        if (typeof body.from !== 'string' || typeof body.to !== 'string' || typeof body.type !== 'string') {
          return this.reply(res, 400, errorBody(400, 'INVALID_ARGUMENT', 'from, to and type are required'));
        }
        const wamid = `wamid.${crypto.randomBytes(8).toString('hex')}`;
        this.reply(res, 200, { id: `msg_${crypto.randomBytes(8).toString('hex')}`, status: 'accepted', wamid });
        const interactive = body.interactive as { type?: unknown; body?: { text?: unknown } } | undefined;
        if (body.type === 'interactive' && interactive?.type === 'call_permission_request') {
          const request: SimPermissionRequest = { id: wamid, business: body.from, customer: body.to, text: typeof interactive.body?.text === 'string' ? interactive.body.text : '' };
          this.permissionRequests.set(wamid, request);
          this.emit('permission-request', request);
        }
        return;
      }
      default: {
        const settings = /^\/phoneNumbers\/([^/]+)\/([^/]+)\/settings$/.exec(path);
        if (settings) {
          const key = `${decodeURIComponent(settings[1]!)}/${decodeURIComponent(settings[2]!)}`;
          const current = this.settings.get(key) ?? { calling: { status: 'DISABLED', iconVisibility: 'DEFAULT' } };
          if (req.method === 'POST') {
            const calling = { ...(current.calling as Record<string, unknown>), ...(body.calling as Record<string, unknown>) };
            this.settings.set(key, { ...current, calling });
            return this.reply(res, 200, { success: true });
          }
          return this.reply(res, 200, current);
        }
        return this.reply(res, 404, errorBody(404, 'NOT_FOUND', `no POST ${url.pathname}`));
      }
    }
  }

  /** Webhooks the WhatsApp side of an outbound call sends (tests compose them into scripts). */
  outboundConnect(call: SimOutboundCall, answerSdp: string): Record<string, unknown> {
    return this.event('whatsapp.call.connect', {
      callingConnect: {
        id: crypto.randomBytes(12).toString('hex'), wacid: call.wacid, phoneId: call.phoneId, from: call.from, to: call.to,
        direction: 'BUSINESS_INITIATED', sdpType: 'answer', sdp: answerSdp, dialTime: Date.now(),
      },
    });
  }

  outboundStatus(call: SimOutboundCall, status: 'RINGING' | 'ACCEPTED' | 'REJECTED'): Record<string, unknown> {
    return this.event('whatsapp.call.status.updated', {
      callingStatusUpdated: { wabaId: '188234691048809', wacid: call.wacid, status, recipientPhone: call.to },
    });
  }

  outboundTerminate(call: SimOutboundCall, status: 'COMPLETED' | 'FAILED'): Record<string, unknown> {
    const c = this.outboundCalls.get(call.wacid);
    if (c) c.ended = true;
    return this.event('whatsapp.call.terminate', {
      callingTerminate: {
        id: crypto.randomBytes(12).toString('hex'), wacid: call.wacid, phoneId: call.phoneId, from: call.from, to: call.to,
        direction: 'BUSINESS_INITIATED', startTime: Date.now() - 1000, endTime: Date.now(), duration: 1, status,
      },
    });
  }

  /** The WhatsApp user's phone rings for an agent's call: connect webhook with `user`'s SDP answer, then RINGING. */
  async rings(call: SimOutboundCall, user: { answer(offer: string): Promise<string> }): Promise<void> {
    await this.deliver(this.outboundConnect(call, await user.answer(call.offer)));
    await this.deliver(this.outboundStatus(call, 'RINGING'));
  }

  /** An outbound script in which `user` answers: it rings, then ACCEPTED after `ringMs`. */
  answeredBy(user: { answer(offer: string): Promise<string> }, ringMs = 0): OutboundScript {
    return async (call) => {
      await this.rings(call, user);
      if (ringMs > 0) await new Promise((r) => setTimeout(r, ringMs)); // the user takes a moment to pick up
      await this.deliverAccepted(call);
    };
  }

  /** Delivers an outbound call's ACCEPTED and remembers when. */
  async deliverAccepted(call: SimOutboundCall): Promise<number> {
    const ev = this.outboundStatus(call, 'ACCEPTED');
    const c = this.outboundCalls.get(call.wacid);
    if (c) c.accepted = true;
    this.acceptedDeliveredAt.set(call.wacid, performance.now());
    return this.deliver(ev);
  }

  private reply(res: http.ServerResponse, status: number, body: unknown): void {
    answered.set(res, body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'YCloud-Request-ID': crypto.randomUUID() });
    res.end(JSON.stringify(body));
  }
}

/** Each response's body, for the 'api' event (a response is answered once). */
const answered = new WeakMap<http.ServerResponse, unknown>();
/** A bridge that does not answer a webhook within this is counted as failing it (YCloud waits about as long). */
const WEBHOOK_TIMEOUT_MS = 30_000;
/** A temporary call permission lasts 7 days (Meta's documented default). */
const PERMISSION_GRANT_MS = 7 * 24 * 3600 * 1000;

function typeOf(event: unknown): string {
  return typeof event === 'object' && event !== null && typeof (event as { type?: unknown }).type === 'string' ? (event as { type: string }).type : 'unknown';
}

/** The wacid a webhook event is about, wherever its payload keeps it. */
function wacidOf(event: unknown): string | null {
  if (typeof event !== 'object' || event === null) return null;
  for (const v of Object.values(event)) {
    if (typeof v === 'object' && v !== null && typeof (v as { wacid?: unknown }).wacid === 'string') return (v as { wacid: string }).wacid;
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

export function newWacid(): string {
  return `wacid.${crypto.randomBytes(12).toString('base64url')}`;
}

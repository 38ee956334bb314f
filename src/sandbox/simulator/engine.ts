import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { CallView, ERR, Face, isRecord, Op, Outcome, SimError } from './face';
import { MetaFace } from './meta-face';
import {
  AccountField, FaceName, Fault, OutboundScript, PermissionChoice, SimApiCall, SimCallState, SimMediaKind, SimOp,
  SimOutboundCall, SimPermissionRequest, SimPermissionView, SimPerson, SimRequest, SimUser, SimWebhook,
} from './types';
import { YCLOUD_PATHS, YCloudFace } from './ycloud-face';

export interface ProviderSimOptions {
  /** Which provider's wire format: YCloud (default) or Meta's Graph API. */
  face?: FaceName;
  /** YCloud's API key, or Meta's access token. */
  apiKey: string;
  /** YCloud's webhook endpoint secret, or Meta's App Secret. */
  secret: string;
  /** Meta: the header carrying the token (`Authorization: Bearer`, or e.g. `D360-API-KEY` with the raw token). */
  authHeader?: string;
  /** Meta: the webhook verify token the bridge is given (the simulator only holds it for the harness). */
  verifyToken?: string;
}

/** A business number the simulator serves. */
export interface SimLine { phoneId: string; number: string; wabaId: string }

interface InboundCall {
  wacid: string;
  phoneId: string;
  business: string;
  person: SimPerson;
  user: SimUser;
  state: 'ringing' | 'pre_accepted' | 'accepted' | 'ended';
  answerApplied: boolean;
  acceptRespondedAt: number | null;
  startTime: number;
  context: string | null;
  ctaPayload: string | null;
  deeplinkPayload: string | null;
}

type OutboundRecord = SimOutboundCall & { ended: boolean; accepted: boolean; person: SimPerson };

interface StoredMedia { body: Buffer; mimeType: string; sha256: string }

/** What an executed request answers, and what happens once the answer is out. */
type Executed = { error: SimError } | { outcome: Outcome; after?: () => void };

/** The simulator's first line: where user calls go unless told otherwise. */
export const DEFAULT_LINE: SimLine = { phoneId: '461269257068831', number: '+6283138205150', wabaId: '188234691048809' };
const DEFAULT_USER_NUMBER = '+6281361905133';

/**
 * A stand-in for a WhatsApp calling provider: a real HTTP server implementing its call, message,
 * permission, settings and media endpoints, and a sender of signed webhooks to the bridge. One call
 * engine (calls, users, permission requests and quota, faults, outbound scripts) behind two faces:
 * YCloud's wire format and Meta's Graph API. Tests drive both with the same methods.
 */
export class ProviderSim extends EventEmitter {
  readonly face: FaceName;
  readonly apiKey: string;
  readonly secret: string;
  readonly verifyToken: string;
  /** Meta: the header the access token comes in. */
  readonly authHeader: string;
  readonly requests: SimRequest[] = [];
  /** Simulated WhatsApp users known by number and/or BSUID (user calls register theirs). */
  readonly users: SimPerson[] = [];
  /** The business numbers, by phone id (a number not listed is the default line's). */
  readonly lines = new Map<string, SimLine>([[DEFAULT_LINE.phoneId, DEFAULT_LINE]]);
  webhookUrl = '';
  /** What the WhatsApp user does when the business calls; runs after connect has been answered. */
  outboundScript: OutboundScript | null = null;
  /** Whether connect's response names the wacid (else only the connect webhook does). */
  connectReturnsWacid = true;
  /** Runs before connect is answered, e.g. to deliver webhooks that overtake the response. */
  beforeConnectResponse: OutboundScript | null = null;
  /** Customers (number or BSUID) who gave the business no call permission: connect fails with 138006. */
  readonly noPermission = new Set<string>();
  readonly settings = new Map<string, Record<string, unknown>>();
  /** Meta's SIP password per number (phone id), made on first read; a test may set its own. */
  readonly sipPasswords = new Map<string, string>();
  /**
   * Whether connect needs the customer's permission as WhatsApp does (the sandbox): given by
   * answerPermission() or grant(), temporary grants expire after 7 days. Off in tests, which use `noPermission`.
   */
  enforcePermissions = false;
  /** Whether permission requests beyond WhatsApp's quota (1 per 24 h, 2 per 7 days) are refused (138009). */
  enforceRequestQuota = false;
  readonly outboundCalls = new Map<string, OutboundRecord>();
  /** When each outbound call's ACCEPTED webhook was delivered (performance.now()). */
  readonly acceptedDeliveredAt = new Map<string, number>();
  private readonly wire: Face;
  private readonly calls = new Map<string, InboundCall>();
  private readonly faults = new Map<string, Fault[]>();
  private readonly delays = new Map<string, number>();
  /** Per customer key: when the grant ends (null: permanent). Declined or never asked: absent. */
  private readonly grants = new Map<string, number | null>();
  private readonly permissionRequests = new Map<string, SimPermissionRequest>();
  /** Per customer key: when permission requests were sent, and when business calls were picked up. */
  private readonly requestTimes = new Map<string, number[]>();
  private readonly connectedTimes = new Map<string, number[]>();
  private readonly media = new Map<string, StoredMedia>();
  private lastDelivery: { body: string; headers: Record<string, string> } | null = null;
  private server: http.Server | null = null;

  constructor(opts: ProviderSimOptions) {
    super();
    this.face = opts.face ?? 'ycloud';
    this.apiKey = opts.apiKey;
    this.secret = opts.secret;
    this.verifyToken = opts.verifyToken ?? 'sim-verify-token';
    this.authHeader = opts.authHeader ?? 'Authorization';
    this.wire = this.face === 'meta' ? new MetaFace({ accessToken: opts.apiKey, authHeader: this.authHeader }) : new YCloudFace(opts.apiKey);
  }

  /** The API base URL the bridge is given (YCloud: `.../v2`; Meta: `.../v23.0`). */
  get baseUrl(): string {
    return `${this.origin}${this.wire.basePath}`;
  }

  private get origin(): string {
    if (!this.server) throw new Error('the simulator is not started');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
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

  /** Serves another business number. */
  addLine(line: SimLine): void {
    this.lines.set(line.phoneId, line);
  }

  /**
   * Registers a simulated WhatsApp user (or returns the one with this number or BSUID). A user without
   * a number is known by BSUID, profile name and username only; one with a number gets a BSUID too.
   */
  addUser(p: Partial<SimPerson>): SimPerson {
    const known = this.userByAddress(p.number ?? null) ?? this.userByAddress(p.userId ?? null);
    if (known) {
      if (p.profileName !== undefined) known.profileName = p.profileName;
      if (p.username !== undefined) known.username = p.username;
      return known;
    }
    if (!p.number && !p.userId) throw new Error('a simulated user needs a number or a BSUID');
    const person: SimPerson = { number: p.number ?? null, userId: p.userId ?? bsuidFor(p.number!), profileName: p.profileName ?? 'Sim User', username: p.username ?? null };
    this.users.push(person);
    return person;
  }

  /** The registered user with this number or BSUID. */
  userByAddress(address: string | null): SimPerson | undefined {
    if (!address) return undefined;
    return this.users.find((u) => u.number === address || u.userId === address);
  }

  /** The next call(s) to `target` fail or are delayed as described. `target`: a SimOp ("accept"), a YCloud path ("/calls/accept") or a face path. */
  failNext(target: SimOp | string, fault: Fault): void {
    const key = opKey(target);
    const list = this.faults.get(key) ?? [];
    list.push(fault);
    this.faults.set(key, list);
  }

  /** Every call to `target` is answered only after `ms` (0 clears it). */
  delay(target: SimOp | string, ms: number): void {
    if (ms) this.delays.set(opKey(target), ms);
    else this.delays.delete(opKey(target));
  }

  requestsFor(wacid: string): SimRequest[] {
    return this.requests.filter((r) => r.wacid === wacid);
  }

  /** Resolves with the first request to `target` (see failNext) for this wacid (already seen, or the next one). */
  waitForRequest(target: SimOp | string, wacid: string): Promise<SimRequest> {
    const key = opKey(target);
    const match = (r: SimRequest) => (r.op === key || r.path === key) && r.wacid === wacid;
    const seen = this.requests.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const on = (r: SimRequest) => {
        if (match(r)) {
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

  /**
   * A WhatsApp user calls the business: the connect webhook with the user's offer. `from` is the
   * caller's number; `caller` names a user by BSUID (and profile), with or without a number.
   */
  async userCalls(user: SimUser, opts: {
    from?: string; to?: string; phoneId?: string; offer?: string; wacid?: string;
    caller?: Partial<SimPerson>; ctaPayload?: string; deeplinkPayload?: string;
  } = {}): Promise<{ wacid: string; eventId: string; status: number }> {
    const wacid = opts.wacid ?? newWacid();
    const line = this.lines.get(opts.phoneId ?? DEFAULT_LINE.phoneId) ?? { ...DEFAULT_LINE, phoneId: opts.phoneId! };
    const person = this.addUser(opts.caller ?? { number: opts.from ?? DEFAULT_USER_NUMBER });
    const call: InboundCall = {
      wacid, phoneId: line.phoneId, business: opts.to ?? line.number, person, user, state: 'ringing', answerApplied: false,
      acceptRespondedAt: null, startTime: Date.now(), context: null, ctaPayload: opts.ctaPayload ?? null, deeplinkPayload: opts.deeplinkPayload ?? null,
    };
    this.calls.set(wacid, call);
    const sdp = opts.offer ?? (await user.createOffer());
    const event = this.wire.webhook({ kind: 'connect', call: this.inboundView(call), sdpType: 'offer', sdp, at: Date.now() });
    const status = await this.deliver(event);
    return { wacid, eventId: this.deliveryIds(event)[0] ?? '', status };
  }

  /**
   * The connect and terminate webhook bodies of a user's call that the engine does not run, for tests
   * that store, repeat or reorder them (a terminate ahead of its connect, a connect replayed after a
   * restart). Nothing is delivered; `at` is the events' time (Meta's connect id carries its second).
   */
  userCallWebhooks(wacid: string, opts: { from?: string; offer: string; at?: number }): { connect: Record<string, unknown>; terminate: Record<string, unknown> } {
    const at = opts.at ?? Date.now();
    const call: CallView = {
      wacid, phoneId: DEFAULT_LINE.phoneId, wabaId: DEFAULT_LINE.wabaId, direction: 'USER_INITIATED', business: DEFAULT_LINE.number,
      person: this.personFor(opts.from ?? DEFAULT_USER_NUMBER), context: null, ctaPayload: null, deeplinkPayload: null,
    };
    return {
      connect: this.wire.webhook({ kind: 'connect', call, sdpType: 'offer', sdp: opts.offer, at }),
      terminate: this.wire.webhook({ kind: 'terminate', call, status: 'FAILED', startTime: at, endTime: at, durationS: this.face === 'ycloud' ? 0 : null, at }),
    };
  }

  /** The user hangs up (or WhatsApp ends the call): the terminate webhook. */
  async userHangsUp(wacid: string): Promise<number> {
    const call = this.calls.get(wacid);
    if (!call || call.state === 'ended') throw new Error(`no live call ${wacid}`);
    return this.terminateWebhook(call, call.state === 'accepted' ? 'COMPLETED' : 'FAILED');
  }

  /** YCloud only: builds a webhook event envelope around a payload written in YCloud's words. */
  event(type: string, payload: Record<string, unknown>): Record<string, unknown> {
    if (!(this.wire instanceof YCloudFace)) throw new Error('event() builds YCloud events; the Meta face builds its webhooks from the call engine (or batch())');
    return this.wire.event(type, payload);
  }

  /** The bridge's dedupe keys for a webhook body (YCloud: the event id; Meta: per call event, status and message). */
  deliveryIds(payload: unknown): string[] {
    return this.wire.deliveryIds(payload);
  }

  /** Meta only: several webhook bodies as one POST (entries of one WABA merged). */
  batch(...payloads: Record<string, unknown>[]): Record<string, unknown> {
    if (!(this.wire instanceof MetaFace)) throw new Error('YCloud sends one event per POST: batch() is for the Meta face');
    return this.wire.batch(payloads);
  }

  /**
   * Posts a webhook body to the bridge, signed unless told otherwise. Returns the HTTP status.
   * `signature`: the header's value (null: none); `secret`: sign with another key; `timestamp`: YCloud's signed time.
   */
  async deliver(event: unknown, opts: { signature?: string | null; raw?: string; secret?: string; timestamp?: number } = {}): Promise<number> {
    const body = opts.raw ?? JSON.stringify(event);
    const headers: Record<string, string> = { 'Content-Type': 'application/json', ...this.wire.webhookHeaders() };
    const sig = opts.signature === undefined ? this.wire.sign(body, opts.secret ?? this.secret, opts.timestamp) : opts.signature;
    if (sig !== null) headers[this.wire.signatureHeader] = sig;
    this.lastDelivery = { body, headers };
    return this.post(body, headers, event);
  }

  /** Posts the last webhook body again, byte for byte with its signature (a provider's retry). */
  async redeliver(): Promise<number> {
    if (!this.lastDelivery) throw new Error('nothing delivered yet');
    const { body, headers } = this.lastDelivery;
    let event: unknown = null;
    try {
      event = JSON.parse(body);
    } catch {
      // a raw body that is not JSON is redelivered as it was
    }
    return this.post(body, headers, event);
  }

  private async post(body: string, headers: Record<string, string>, event: unknown): Promise<number> {
    const res = await fetch(this.webhookUrl, { method: 'POST', headers, body, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
    await res.arrayBuffer();
    const { type, wacid } = this.wire.describe(event);
    this.emit('webhook', { type, wacid, event, status: res.status, at: Date.now() } satisfies SimWebhook);
    return res.status;
  }

  /**
   * The customer answers a permission request: the reply webhook, as WhatsApp sends it. With
   * enforcePermissions, a grant lets connect to this customer through (for 7 days, or for good).
   */
  async answerPermission(id: string, choice: PermissionChoice): Promise<number> {
    const request = this.permissionRequests.get(id);
    if (!request) throw new Error(`no permission request ${id}`);
    this.permissionRequests.delete(id);
    const now = Date.now();
    const expires = choice === 'temporary' ? now + PERMISSION_GRANT_MS : null;
    const key = this.keyOf(request.customer);
    if (choice === 'decline') this.grants.delete(key);
    else this.grants.set(key, expires);
    const line = this.lineByNumber(request.business);
    return this.deliver(this.wire.webhook({
      kind: 'permission_reply', request, person: this.personFor(request.customer), wabaId: line.wabaId, phoneId: line.phoneId,
      accept: choice !== 'decline', permanent: choice === 'permanent', expires, at: now,
    }));
  }

  /** Whether a permission request is still waiting for the customer's answer. */
  permissionRequestPending(id: string): boolean {
    return this.permissionRequests.has(id);
  }

  /** Records a permission the customer (number or BSUID) gave before (until: ms since epoch, or null for permanent). */
  grant(customer: string, until: number | null): void {
    this.grants.set(this.keyOf(customer), until);
  }

  /** The customer's permission and request quota, as Meta's GET /call_permissions reports them. */
  permissionView(customer: string, now = Date.now()): SimPermissionView {
    const key = this.keyOf(customer);
    const person = this.userByAddress(customer);
    const refused = [customer, person?.number, person?.userId].some((a) => a && this.noPermission.has(a));
    const until = this.grants.get(key);
    const live = !refused && this.grants.has(key) && (until === null || (until !== undefined && until > now));
    const permission: SimPermissionView['permission'] = !live
      ? { status: 'no_permission' }
      : until === null || until === undefined ? { status: 'permanent' } : { status: 'temporary', expiration_time: Math.floor(until / 1000) };
    const requests = this.requestTimes.get(key) ?? [];
    const day = window(requests, DAY_MS, REQUESTS_PER_DAY, now);
    const week = window(requests, WEEK_MS, REQUESTS_PER_WEEK, now);
    const calls = window(this.connectedTimes.get(key) ?? [], DAY_MS, CALLS_PER_DAY, now);
    return {
      permission,
      actions: [
        { action_name: 'send_call_permission_request', can_perform_action: day.left && week.left, limits: [day.limit, week.limit] },
        { action_name: 'start_call', can_perform_action: live && calls.left, limits: [calls.limit] },
      ],
    };
  }

  /**
   * WhatsApp made a file of a call (Meta: recording, transcription, or a voicemail left on a missed
   * call; YCloud: recording or transcription, JSON by default): stores it for the download (Meta: and
   * GET /{mediaId}; YCloud: GET /whatsapp/calls/media/{id}), and sends its webhook. `withUrl: false`
   * (Meta): the webhook names the media id only (the bridge must look the URL up); YCloud's never has a URL.
   */
  async mediaAvailable(wacid: string, media: SimMediaKind, file: { body?: Buffer; mimeType?: string; withUrl?: boolean } = {}): Promise<{ mediaId: string; url: string; sha256: string; status: number }> {
    const inbound = this.calls.get(wacid);
    const outbound = this.outboundCalls.get(wacid);
    const call = inbound ? this.inboundView(inbound) : outbound ? this.outboundView(outbound) : null;
    if (!call) throw new Error(`no call ${wacid}`);
    // YCloud's transcription is JSON; Meta's is text.
    const jsonTranscript = media === 'transcription' && this.face === 'ycloud';
    const transcript = jsonTranscript ? `${JSON.stringify({ wacid, segments: [{ speaker: 'user', text: 'hello' }] })}\n` : `transcript of ${wacid}\n`;
    const body = file.body ?? Buffer.from(media === 'transcription' ? transcript : `OggS simulated ${media} of ${wacid}`);
    const mimeType = file.mimeType ?? (media === 'transcription' ? (jsonTranscript ? 'application/json' : 'text/plain') : 'audio/ogg');
    const mediaId = this.wire.newMediaId();
    const sha256 = crypto.createHash('sha256').update(body).digest('hex');
    this.media.set(mediaId, { body, mimeType, sha256 });
    const url = this.mediaUrl(mediaId);
    const status = await this.deliver(this.wire.webhook({ kind: 'media', call, media, mediaId, url: file.withUrl === false ? null : url, mimeType, sha256, at: Date.now() }));
    return { mediaId, url, sha256, status };
  }

  /**
   * Meta's account webhooks, on demand: `account_update` (`event` e.g. ACCOUNT_VIOLATION with
   * `violation_info`, ACCOUNT_RESTRICTION with `restriction_info`) or `account_settings_update`
   * (the number's current calling settings). `detail` is merged into the value.
   */
  async accountNotice(field: AccountField, opts: { phoneId?: string; event?: string; detail?: Record<string, unknown> } = {}): Promise<number> {
    const line = this.lines.get(opts.phoneId ?? DEFAULT_LINE.phoneId) ?? DEFAULT_LINE;
    const now = Date.now();
    const value: Record<string, unknown> = field === 'account_update'
      ? { phone_number: line.number.replace(/^\+/, ''), event: opts.event ?? 'ACCOUNT_VIOLATION', ...opts.detail }
      : {
        phone_number_id: line.phoneId, display_phone_number: line.number.replace(/^\+/, ''), timestamp: String(Math.floor(now / 1000)),
        ...(this.settings.get(line.phoneId) ?? this.wire.defaultSettings()), ...opts.detail,
      };
    return this.deliver(this.wire.webhook({ kind: 'account', field, wabaId: line.wabaId, phoneId: line.phoneId, business: line.number, value, at: now }));
  }

  private mediaUrl(mediaId: string): string {
    return `${this.origin}${this.wire.mediaPath(mediaId)}`;
  }

  /** The grants', quota's and refusals' key for a customer address: the user's number, else their BSUID. */
  private keyOf(address: string): string {
    const p = this.userByAddress(address);
    return p?.number ?? p?.userId ?? address;
  }

  /** The registered user at this address, or a passer-by known only by it. */
  private personFor(address: string): SimPerson {
    return this.userByAddress(address) ?? (address.startsWith('+')
      ? { number: address, userId: bsuidFor(address), profileName: 'Sim User', username: null }
      : { number: null, userId: address, profileName: 'Sim User', username: null });
  }

  private lineByNumber(number: string): SimLine {
    for (const l of this.lines.values()) if (l.number === number) return l;
    return { ...DEFAULT_LINE, number };
  }

  private permitted(address: string): boolean {
    const until = this.grants.get(this.keyOf(address));
    if (!this.grants.has(this.keyOf(address))) return false;
    return until === null || (until !== undefined && until > Date.now());
  }

  private refused(person: SimPerson, address: string): boolean {
    return [address, person.number, person.userId].some((a) => a !== null && this.noPermission.has(a));
  }

  private inboundView(c: InboundCall): CallView {
    const line = this.lines.get(c.phoneId) ?? DEFAULT_LINE;
    return {
      wacid: c.wacid, phoneId: c.phoneId, wabaId: line.wabaId, direction: 'USER_INITIATED', business: c.business, person: c.person,
      context: c.context, ctaPayload: c.ctaPayload, deeplinkPayload: c.deeplinkPayload,
    };
  }

  private outboundView(c: OutboundRecord): CallView {
    const line = this.lines.get(c.phoneId) ?? DEFAULT_LINE;
    return {
      wacid: c.wacid, phoneId: c.phoneId, wabaId: line.wabaId, direction: 'BUSINESS_INITIATED', business: c.from, person: c.person,
      context: c.context, ctaPayload: null, deeplinkPayload: null,
    };
  }

  private async terminateWebhook(call: InboundCall, status: 'COMPLETED' | 'FAILED'): Promise<number> {
    const answered = call.state === 'accepted';
    call.state = 'ended';
    this.emit('call-state', call.wacid, 'ended' satisfies SimCallState);
    const end = Date.now();
    return this.deliver(this.wire.webhook({
      kind: 'terminate', call: this.inboundView(call), status, startTime: call.startTime, endTime: end,
      durationS: answered || this.face === 'ycloud' ? Math.round((end - call.startTime) / 1000) : null, at: end,
    }));
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = this.wire.localPath(url.pathname);
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      const { status, body: answer } = this.wire.error(ERR.invalid('body is not JSON'));
      return this.reply(res, status, answer);
    }
    const method = req.method ?? 'GET';
    const op = this.wire.parse(method, path, url.searchParams, body);
    const record: SimRequest = {
      method, path, op: this.wire.opOf(op), wacid: 'wacid' in op && typeof op.wacid === 'string' ? op.wacid : null, body, at: performance.now(), ...carried(op),
    };
    res.once('finish', () => this.emit('api', { method, path, wacid: record.wacid, body, status: res.statusCode, response: answered.get(res) ?? null, at: Date.now() } satisfies SimApiCall));
    this.requests.push(record);
    this.emit('request', record);
    if (!this.wire.authorized(req.headers)) {
      const { status, body: answer } = this.wire.unauthorized();
      return this.reply(res, status, answer);
    }
    if (op.op === 'media_download' && this.face === 'ycloud' && req.headers.range) {
      // YCloud answers the whole file only: a Range header is refused.
      const { status, body: answer } = this.wire.error(ERR.invalid('Range requests are not supported'));
      return this.reply(res, status, answer);
    }
    const delay = this.delays.get(record.op) ?? this.delays.get(path) ?? 0;
    const fault = this.faults.get(record.op)?.shift() ?? this.faults.get(path)?.shift();
    if (delay || fault?.delayMs) await new Promise((r) => setTimeout(r, delay + (fault?.delayMs ?? 0)));
    if (fault && fault.status >= 300 && fault.status < 400) {
      res.writeHead(fault.status, { Location: fault.location ?? '/', ...this.wire.answerHeaders() });
      res.end();
      return;
    }
    if (fault && fault.status >= 400) {
      const { status, body: answer } = this.wire.error({
        status: fault.status, code: fault.code ?? 'FAILED', message: fault.message ?? 'simulated failure',
        ...(fault.whatsappCode !== undefined ? { whatsappCode: fault.whatsappCode } : {}), ...(fault.subcode !== undefined ? { subcode: fault.subcode } : {}),
      });
      return this.reply(res, status, answer);
    }
    const done = await this.execute(op);
    if ('error' in done) {
      const { status, body: answer } = this.wire.error(done.error);
      return this.reply(res, status, answer);
    }
    if (done.outcome.kind === 'bytes') {
      answered.set(res, `<${done.outcome.body.length} bytes>`);
      res.writeHead(200, { 'Content-Type': done.outcome.mimeType, 'Content-Length': String(done.outcome.body.length) });
      res.end(done.outcome.body);
    } else this.reply(res, 200, this.wire.render(done.outcome));
    done.after?.();
  }

  /** Acts on a request: the engine's half, the same for both faces. */
  private async execute(op: Op): Promise<Executed> {
    switch (op.op) {
      case 'invalid':
        return { error: ERR.invalid(op.message) };
      case 'not_found':
        return { error: ERR.notFound(op.message) };
      case 'pre_accept':
      case 'accept':
        return this.accept(op);
      case 'reject':
      case 'terminate':
        return this.end(op.wacid);
      case 'connect':
        return this.connect(op);
      case 'message':
        return this.message(op);
      case 'call_permissions':
        return { outcome: { kind: 'permissions', view: this.permissionView(op.to) } };
      case 'settings': {
        const current = this.settings.get(op.key) ?? this.wire.defaultSettings();
        if (!op.update) return { outcome: { kind: 'settings', settings: op.credentials ? this.withSipPassword(op.key, current) : current } };
        const was = isRecord(current.calling) ? current.calling : {};
        const calling: Record<string, unknown> = { ...was, ...op.update };
        // Meta's nested parts are changed field by field: enabling SIP keeps the server set before.
        for (const part of ['sip', 'audio']) {
          if (isRecord(was[part]) && isRecord(op.update[part])) calling[part] = { ...was[part], ...op.update[part] };
        }
        this.settings.set(op.key, { ...current, calling });
        return { outcome: { kind: 'success' } };
      }
      case 'media': {
        const m = this.media.get(op.mediaId);
        if (!m) return { error: ERR.notFound(`no media ${op.mediaId}`) };
        return { outcome: { kind: 'media', mediaId: op.mediaId, url: this.mediaUrl(op.mediaId), mimeType: m.mimeType, sha256: m.sha256, size: m.body.length } };
      }
      case 'media_download': {
        const m = this.media.get(op.mediaId);
        if (!m) return { error: ERR.notFound(`no media ${op.mediaId}`) };
        return { outcome: { kind: 'bytes', body: m.body, mimeType: m.mimeType } };
      }
    }
  }

  /** The settings as `include_sip_credentials=true` reads them: each SIP server with the number's password (`sip_user_password`). */
  private withSipPassword(key: string, current: Record<string, unknown>): Record<string, unknown> {
    const calling = isRecord(current.calling) ? current.calling : {};
    const sip = isRecord(calling.sip) ? calling.sip : null;
    if (!sip || !Array.isArray(sip.servers)) return current;
    let password = this.sipPasswords.get(key);
    if (password === undefined) {
      password = crypto.randomBytes(18).toString('base64url');
      this.sipPasswords.set(key, password);
    }
    const servers = sip.servers.map((s: unknown) => (isRecord(s) ? { ...s, sip_user_password: password } : s));
    return { ...current, calling: { ...calling, sip: { ...sip, servers } } };
  }

  private async accept(op: Extract<Op, { op: 'pre_accept' | 'accept' }>): Promise<Executed> {
    const call = this.calls.get(op.wacid);
    if (!call) return { error: ERR.notFound('unknown wacid') };
    if (call.state === 'ended') return { error: ERR.precondition('call already ended', 138004) };
    if (op.sdpType !== 'answer' || typeof op.sdp !== 'string' || !op.sdp.startsWith('v=0')) return { error: ERR.invalid('sdp answer required') };
    if (!call.answerApplied) {
      call.answerApplied = true;
      await call.user.applyAnswer(op.sdp);
    }
    if (op.context) call.context = op.context;
    if (op.op === 'accept') {
      call.state = 'accepted';
      call.acceptRespondedAt = performance.now();
    } else call.state = 'pre_accepted';
    const state = call.state;
    return { outcome: { kind: 'success' }, after: () => this.emit('call-state', call.wacid, state satisfies SimCallState) };
  }

  private end(wacid: string): Executed {
    const out = this.outboundCalls.get(wacid);
    if (out) {
      if (out.ended) return { error: ERR.precondition('call already ended') };
      return {
        outcome: { kind: 'success' },
        after: () => {
          this.emit('call-state', out.wacid, 'ended' satisfies SimCallState);
          setImmediate(() => void this.deliver(this.outboundTerminate(out, out.accepted ? 'COMPLETED' : 'FAILED')).catch(() => undefined));
        },
      };
    }
    const call = this.calls.get(wacid);
    if (!call) return { error: ERR.notFound('unknown wacid') };
    if (call.state === 'ended') return { error: ERR.precondition('call already ended') };
    const completed = call.state === 'accepted';
    // WhatsApp confirms every end with a terminate webhook.
    return { outcome: { kind: 'success' }, after: () => setImmediate(() => void this.terminateWebhook(call, completed ? 'COMPLETED' : 'FAILED').catch(() => undefined)) };
  }

  private async connect(op: Extract<Op, { op: 'connect' }>): Promise<Executed> {
    const address = op.to ?? op.recipient!;
    // Meta names the user by `to` (wins) or `recipient` (a BSUID): the BSUID must be a user WhatsApp knows.
    const person = op.to ? this.personFor(op.to) : this.userByAddress(address);
    if (!person) return { error: ERR.whatsapp(`Receiver is incapable of receiving this call: no WhatsApp user ${address}`, 138001) };
    if (this.refused(person, address) || (this.enforcePermissions && !this.permitted(address))) {
      return { error: ERR.whatsapp('No approved call permission from the recipient', 138006) };
    }
    const line = op.phoneId ? (this.lines.get(op.phoneId) ?? { ...DEFAULT_LINE, phoneId: op.phoneId }) : this.lineByNumber(op.from ?? DEFAULT_LINE.number);
    const out: OutboundRecord = {
      wacid: newWacid(), phoneId: line.phoneId, from: op.from ?? line.number, to: address, offer: op.sdp,
      user: this.userByAddress(address) ?? null, person, context: op.context, ended: false, accepted: false,
    };
    if (!op.phoneId) out.phoneId = DEFAULT_LINE.phoneId;
    this.outboundCalls.set(out.wacid, out);
    if (this.beforeConnectResponse) await this.beforeConnectResponse(out);
    const script = this.outboundScript;
    return {
      outcome: { kind: 'connected', wacid: out.wacid, to: address, withWacid: this.connectReturnsWacid },
      after: () => {
        if (script) setImmediate(() => void script(out).catch((err: unknown) => this.emit('script-error', err)));
      },
    };
  }

  private message(op: Extract<Op, { op: 'message' }>): Executed {
    const business = op.from ?? (this.lines.get(op.phoneId ?? '') ?? DEFAULT_LINE).number;
    const wamid = `wamid.${crypto.randomBytes(8).toString('hex')}`;
    if (!op.permissionRequest) return { outcome: { kind: 'message_sent', wamid, to: op.to } };
    const key = this.keyOf(op.to);
    const now = Date.now();
    const times = (this.requestTimes.get(key) ?? []).filter((t) => t > now - WEEK_MS);
    const allowed = window(times, DAY_MS, REQUESTS_PER_DAY, now).left && window(times, WEEK_MS, REQUESTS_PER_WEEK, now).left;
    if (this.enforceRequestQuota && !allowed) return { error: ERR.whatsapp('Call permission request limit reached for this user', 138009) };
    times.push(now);
    this.requestTimes.set(key, times);
    const request: SimPermissionRequest = { id: wamid, business, customer: op.to, text: op.text };
    this.permissionRequests.set(wamid, request);
    return { outcome: { kind: 'message_sent', wamid, to: op.to }, after: () => this.emit('permission-request', request) };
  }

  /** Webhooks the WhatsApp side of an outbound call sends (tests compose them into scripts). */
  outboundConnect(call: SimOutboundCall, answerSdp: string): Record<string, unknown> {
    return this.wire.webhook({ kind: 'connect', call: this.outboundView(this.outboundRecord(call)), sdpType: 'answer', sdp: answerSdp, at: Date.now() });
  }

  outboundStatus(call: SimOutboundCall, status: 'RINGING' | 'ACCEPTED' | 'REJECTED'): Record<string, unknown> {
    return this.wire.webhook({ kind: 'status', call: this.outboundView(this.outboundRecord(call)), status, at: Date.now() });
  }

  outboundTerminate(call: SimOutboundCall, status: 'COMPLETED' | 'FAILED'): Record<string, unknown> {
    const c = this.outboundRecord(call);
    c.ended = true;
    const now = Date.now();
    return this.wire.webhook({
      kind: 'terminate', call: this.outboundView(c), status, startTime: now - 1000, endTime: now,
      durationS: c.accepted || this.face === 'ycloud' ? 1 : null, at: now,
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
    const c = this.outboundRecord(call);
    const ev = this.outboundStatus(call, 'ACCEPTED');
    c.accepted = true;
    const key = this.keyOf(c.to);
    this.connectedTimes.set(key, [...(this.connectedTimes.get(key) ?? []), Date.now()]);
    this.acceptedDeliveredAt.set(call.wacid, performance.now());
    return this.deliver(ev);
  }

  /** The engine's record of an outbound call (a test may hand in a call it made up). */
  private outboundRecord(call: SimOutboundCall): OutboundRecord {
    const known = this.outboundCalls.get(call.wacid);
    if (known) return known;
    return { ...call, user: call.user ?? null, context: call.context ?? null, person: call.user ?? this.personFor(call.to), ended: false, accepted: false };
  }

  private reply(res: http.ServerResponse, status: number, body: unknown): void {
    answered.set(res, body);
    res.writeHead(status, { 'Content-Type': 'application/json', ...this.wire.answerHeaders() });
    res.end(JSON.stringify(body));
  }
}

/** Each response's body, for the 'api' event (a response is answered once). */
const answered = new WeakMap<http.ServerResponse, unknown>();
/** A bridge that does not answer a webhook within this is counted as failing it (providers wait about as long). */
const WEBHOOK_TIMEOUT_MS = 30_000;
/** A temporary call permission lasts 7 days (Meta's documented default). */
const PERMISSION_GRANT_MS = 7 * 24 * 3600 * 1000;
const DAY_MS = 24 * 3600 * 1000;
const WEEK_MS = 7 * DAY_MS;
/** Meta's limits: permission requests 1 per 24 h and 2 per 7 days; 100 connected business calls per user per 24 h. */
const REQUESTS_PER_DAY = 1;
const REQUESTS_PER_WEEK = 2;
const CALLS_PER_DAY = 100;

/** How much of a rolling limit is used, as Meta's `limits[]` entry says it. */
function window(times: number[], ms: number, max: number, now: number): { left: boolean; limit: SimPermissionView['actions'][number]['limits'][number] } {
  const inside = times.filter((t) => t > now - ms);
  const period = ms === DAY_MS ? 'PT24H' : 'P7D';
  const oldest = inside.length ? Math.min(...inside) : null;
  return {
    left: inside.length < max,
    limit: { time_period: period, max_allowed: max, current_usage: inside.length, ...(oldest !== null && inside.length >= max ? { limit_expiration_time: Math.floor((oldest + ms) / 1000) } : {}) },
  };
}

/** A target for faults and waits: a YCloud path is read as the engine's name for it. */
function opKey(target: string): string {
  return YCLOUD_PATHS[target] ?? target;
}

/** A stable BSUID for a number (a user with a number has one too). */
function bsuidFor(number: string): string {
  const h = crypto.createHash('sha256').update(number).digest('hex');
  return `US.${BigInt(`0x${h.slice(0, 16)}`).toString()}`;
}

export function newWacid(): string {
  return `wacid.${crypto.randomBytes(12).toString('base64url')}`;
}

/** What a request carried, in the simulator's words (see SimRequest). */
function carried(op: Op): Pick<SimRequest, 'sdp' | 'from' | 'to' | 'context'> {
  const plus = (n: string | null): string | null => (n === null ? null : /^\d+$/.test(n) ? `+${n}` : n);
  switch (op.op) {
    case 'connect': return { sdp: op.sdp, from: plus(op.from), to: plus(op.to) ?? op.recipient, context: op.context };
    case 'pre_accept': case 'accept': return { sdp: typeof op.sdp === 'string' ? op.sdp : null, from: null, to: null, context: op.context };
    case 'message': return { sdp: null, from: plus(op.from), to: plus(op.to), context: null };
    case 'call_permissions': return { sdp: null, from: null, to: plus(op.to), context: null };
    default: return { sdp: null, from: null, to: null, context: null };
  }
}

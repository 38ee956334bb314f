import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import Router from '@koa/router';
import net, { Socket } from 'node:net';
import type { Context, Next } from 'koa';
import { CdrStore, CallFields } from '../cdr/store';
import { Logger } from '../log';
import { jsonBody } from '../http/json-body';
import { printable } from '../http/ingress-guard';
import { RefusalLog } from '../refusal-log';
import { MetaSipPhone, PhoneRequestError } from './meta-sip-phone';
import type { MetaSipSim } from './simulator/meta-sip';
import { newWacid, PermissionChoice, SimApiCall, SimCallState, SimOutboundCall, SimPermissionRequest, SimWebhook, ProviderSim } from './ycloud-simulator';

/** One line of the page's live timeline. */
export interface TimelineEntry {
  at: number;
  kind: 'webhook' | 'api' | 'sip' | 'meta' | 'cdr' | 'demo' | 'phone' | 'info';
  title: string;
  wacid?: string | null;
  detail?: unknown;
}

export interface PhoneServerOptions {
  sim: ProviderSim;
  cdr: CdrStore;
  log: Logger;
  /** The WhatsApp user the page plays, and the business it calls. */
  userNumber: string;
  businessNumber: string;
  businessName: string;
  phoneId: string;
  /** What answers the business's calls: "demo agent" or the PBX_TARGET. */
  pbx: string;
  /**
   * The address the page is served on besides loopback (SANDBOX_HOST, --listen): a Host naming it is
   * answered too. Loopback only when unset or itself loopback.
   */
  pageHost?: string;
  /** Bounds on the pages' event streams (defaults: SSE_LIMITS). */
  streams?: Partial<StreamLimits>;
  /**
   * `--provider meta-sip`: the calls go through Meta's SIP simulator (SIP over TLS to the bridge), the
   * page being its WhatsApp user; `sim` still answers for Graph (permissions, settings).
   */
  metaSip?: MetaSipSim;
}

/** Bounds on the pages' event streams (SSE). */
export interface StreamLimits {
  /** Pages open at once; one more is answered 503. */
  maxPages: number;
  /** A comment line is sent to every page this often; a page's stream is checked then too. */
  keepaliveMs: number;
  /** A page that has let this much pile up unread (it stopped reading) is closed; the browser reconnects. */
  maxBufferedBytes: number;
  /** A stream is ended after this long; EventSource reconnects by itself and gets the recent timeline again. */
  maxAgeMs: number;
}

export const SSE_LIMITS: StreamLimits = { maxPages: 20, keepaliveMs: 15_000, maxBufferedBytes: 1024 * 1024, maxAgeMs: 60 * 60 * 1000 };

/** Where the page's files are: next to this module's source (dist/src/sandbox -> src/sandbox/public). */
export function sandboxAsset(...parts: string[]): string {
  const candidates = [path.resolve(__dirname, '../../../src/sandbox', ...parts), path.resolve(__dirname, ...parts)];
  return candidates.find((p) => fs.existsSync(p)) ?? candidates[0]!;
}

const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/sandbox': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/sandbox/phone.js': { file: 'phone.js', type: 'text/javascript; charset=utf-8' },
  '/sandbox/phone.css': { file: 'phone.css', type: 'text/css; charset=utf-8' },
};
/** Timeline entries a newly opened page is sent first (the calls so far). */
const HISTORY = 300;
/** A call's CDR row is read this long after its last write that set ended_at (the end's writes settle). */
const CDR_SETTLE_MS = 300;
const MAX_SDP = 16 * 1024;

class BadRequest extends Error {}

/**
 * The server side of the sandbox's browser phone: the page's event stream (SSE), its actions (POST),
 * and the timeline fed by the simulated YCloud (webhooks sent, API calls received), the bridge's CDR
 * writes (each call's timeline events, the final row) and the demo agent.
 */
export class PhoneServer {
  private readonly clients = new Map<PassThrough, { opened: number; socket: Socket }>();
  private readonly limits: StreamLimits;
  private readonly refusals: RefusalLog;
  private readonly history: string[] = [];
  private readonly outbound = new Map<string, SimOutboundCall>();
  /** Calls the page's user hung up or declined (their end is reported as the user's). */
  private readonly userEnded = new Set<string>();
  private readonly cdrTimers = new Map<string, NodeJS.Timeout>();
  private readonly wacidOfCall = new Map<string, string>();
  private readonly keepalive: NodeJS.Timeout;
  private readonly sip: MetaSipPhone | null;
  /** Permission prompts sent and not answered yet: a page opened (or reconnected) later is shown them too. */
  private readonly prompts = new Map<string, Record<string, unknown>>();
  private closed = false;

  constructor(private readonly o: PhoneServerOptions) {
    const { sim, cdr } = o;
    this.limits = { ...SSE_LIMITS, ...o.streams };
    this.refusals = new RefusalLog(o.log);
    this.sip = o.metaSip ? new MetaSipPhone({
      sim: o.metaSip, userNumber: o.userNumber, businessNumber: o.businessNumber, log: o.log,
      send: (event, data) => this.send(event, data),
      note: (title, wacid, detail) => this.timeline({ at: Date.now(), kind: 'meta', title, wacid, detail }),
    }) : null;
    sim.on('webhook', (w: SimWebhook) => this.timeline({
      at: w.at, kind: 'webhook', wacid: w.wacid, detail: w.event,
      title: `${w.type}${statusOf(w.event)} → bridge answered ${w.status}`,
    }));
    sim.on('api', (c: SimApiCall) => this.timeline({
      at: c.at, kind: 'api', wacid: c.wacid, detail: { request: c.body, response: c.response },
      title: `${c.method} ${c.path} ← ${c.status}`,
    }));
    sim.on('permission-request', (r: SimPermissionRequest) => {
      const prompt = { id: r.id, business: r.business, businessName: o.businessName, text: r.text };
      this.prompts.set(r.id, prompt);
      this.send('permission-request', prompt);
    });
    sim.on('call-state', (wacid: string, state: SimCallState) => {
      if (state === 'accepted') this.send('accepted', { wacid });
      if (state === 'ended') {
        this.outbound.delete(wacid);
        const by = this.userEnded.delete(wacid) ? 'user' : 'business';
        this.send('ended', { wacid, by, reason: by === 'user' ? 'you hung up' : 'the business ended the call' });
      }
    });
    sim.outboundScript = async (call) => this.ring(call);
    cdr.on('event', (callId, type, detail, at) => this.timeline({ at: at.getTime(), kind: 'sip', wacid: this.wacidOfCall.get(callId) ?? null, title: type, detail }));
    cdr.on('call', (callId, fields) => this.onCallWritten(callId, fields));
    this.keepalive = setInterval(() => this.tick(), this.limits.keepaliveMs);
    this.keepalive.unref();
  }

  /** Adds a line to every open page's timeline (and to the history a page opened later gets). */
  timeline(entry: TimelineEntry): void {
    const frame = sse('timeline', entry);
    this.history.push(frame);
    if (this.history.length > HISTORY) this.history.shift();
    this.write(frame);
  }

  /** Pages open now. */
  get pages(): number {
    return this.clients.size;
  }

  routes(): Router {
    const r = new Router();
    r.use((ctx, next) => this.guard(ctx, next));
    for (const [route, { file, type }] of Object.entries(PAGE_FILES)) {
      r.get(route, async (ctx) => {
        ctx.type = type;
        ctx.set('Cache-Control', 'no-store');
        ctx.body = await fs.promises.readFile(sandboxAsset('public', file));
      });
    }
    r.get('/sandbox/events', (ctx) => this.openStream(ctx));
    r.post('/sandbox/api/calls', (ctx) => this.act(ctx, async (body) => {
      const sdp = sdpOf(body);
      if (this.sip) return this.sip.place(sdp);
      const wacid = newWacid();
      const user = {
        createOffer: async () => sdp,
        applyAnswer: async (answer: string) => {
          const stage = this.o.sim.requestsFor(wacid).at(-1)?.op === 'accept' ? 'accept' : 'preAccept';
          this.send('answer', { wacid, sdp: answer, stage });
        },
      };
      const sent = await this.o.sim.userCalls(user, { wacid, from: this.o.userNumber, to: this.o.businessNumber, phoneId: this.o.phoneId, offer: sdp });
      if (sent.status !== 200) throw new Error(`the bridge answered the connect webhook with ${sent.status}`);
      return { wacid };
    }));
    r.post('/sandbox/api/calls/:wacid/:action', (ctx) => this.act(ctx, (body) => {
      const { wacid, action } = ctx.params as { wacid: string; action: string };
      if (!this.sip) return this.callAction(wacid, action, body);
      return this.sip.act(wacid, action, { sdp: action === 'ringing' ? sdpOf(body) : undefined }).catch((err: unknown) => {
        throw err instanceof PhoneRequestError ? new BadRequest(err.message) : err;
      });
    }));
    r.post('/sandbox/api/permissions/:id', (ctx) => this.act(ctx, async (body) => {
      const choice = body.choice;
      if (choice !== 'temporary' && choice !== 'permanent' && choice !== 'decline') throw new BadRequest('choice must be temporary, permanent or decline');
      const id = ctx.params.id!;
      const status = await this.o.sim.answerPermission(id, choice satisfies PermissionChoice).catch((err: Error) => {
        // Answered already (on another page): no page should show it any more.
        if (this.prompts.delete(id)) this.send('permission-answered', { id });
        throw new BadRequest(err.message);
      });
      // Every other open page takes the prompt down.
      this.prompts.delete(id);
      this.send('permission-answered', { id, choice });
      return { status };
    }));
    return r;
  }

  /** Ends every page's stream (the sandbox is stopping). */
  close(): void {
    this.closed = true;
    clearInterval(this.keepalive);
    for (const t of this.cdrTimers.values()) clearTimeout(t);
    for (const c of this.clients.keys()) c.end();
    this.clients.clear();
  }

  /** An agent's call reaches the WhatsApp user: every open page rings. */
  private ring(call: SimOutboundCall): void {
    this.outbound.set(call.wacid, call);
    if (this.clients.size === 0) {
      this.timeline({ at: Date.now(), kind: 'info', wacid: call.wacid, title: `no sandbox phone is open to ring for ${call.to}: open /sandbox` });
    }
    this.send('incoming', { wacid: call.wacid, from: call.from, to: call.to, offer: call.offer });
  }

  private async callAction(wacid: string, action: string, body: Record<string, unknown>): Promise<unknown> {
    const { sim } = this.o;
    const out = this.outbound.get(wacid);
    switch (action) {
      case 'ringing': {
        if (!out) throw new BadRequest('no agent call ringing with this wacid');
        const sdp = sdpOf(body);
        // WhatsApp sends the callee's SDP answer (connect) and RINGING as soon as the phone rings.
        await sim.deliver(sim.outboundConnect(out, sdp));
        await sim.deliver(sim.outboundStatus(out, 'RINGING'));
        return {};
      }
      case 'accept':
        if (!out) throw new BadRequest('no agent call ringing with this wacid');
        await sim.deliverAccepted(out);
        return {};
      case 'decline':
        if (!out) throw new BadRequest('no agent call ringing with this wacid');
        this.userEnded.add(wacid);
        await sim.deliver(sim.outboundStatus(out, 'REJECTED'));
        await sim.deliver(sim.outboundTerminate(out, 'FAILED'));
        this.endedByUser(wacid);
        return {};
      case 'hangup': {
        this.userEnded.add(wacid);
        if (out) {
          const accepted = sim.outboundCalls.get(wacid)?.accepted === true;
          await sim.deliver(sim.outboundTerminate(out, accepted ? 'COMPLETED' : 'FAILED'));
          this.endedByUser(wacid);
          return {};
        }
        // A user-initiated call: its terminate webhook ends it (and tells the page through call-state).
        await sim.userHangsUp(wacid).catch((err: Error) => {
          this.userEnded.delete(wacid);
          throw new BadRequest(err.message);
        });
        return {};
      }
      default:
        throw new BadRequest(`unknown action ${action}`);
    }
  }

  /** An agent's call the user ended: the simulator has no state change to report for it. */
  private endedByUser(wacid: string): void {
    this.outbound.delete(wacid);
    if (this.userEnded.delete(wacid)) this.send('ended', { wacid, by: 'user', reason: 'you ended the call' });
  }

  private onCallWritten(callId: string, fields: CallFields): void {
    if (typeof fields.wacid === 'string') this.wacidOfCall.set(callId, fields.wacid);
    if (!fields.ended_at && !this.cdrTimers.has(callId)) return;
    clearTimeout(this.cdrTimers.get(callId));
    const t = setTimeout(() => {
      this.cdrTimers.delete(callId);
      if (this.closed) return;
      this.o.cdr.findCall(callId).then((row) => {
        if (!row) return;
        const cdr = row.toJSON() as Record<string, unknown>;
        this.timeline({
          at: Date.now(), kind: 'cdr', wacid: typeof cdr.wacid === 'string' ? cdr.wacid : null, detail: cdr,
          title: `CDR ${String(cdr.direction)} ${String(cdr.outcome ?? '')}`.trim(),
        });
        this.wacidOfCall.delete(callId);
      }, (err: Error) => this.o.log.warn({ err: err.message, callId }, 'sandbox: could not read the CDR row'));
    }, CDR_SETTLE_MS);
    this.cdrTimers.set(callId, t);
  }

  /**
   * Every sandbox route: the page is served to, and acts for, a browser on this machine only (or, with
   * --listen, one that reached pageHost). A Host that is neither a loopback name nor pageHost is refused
   * (421: a DNS-rebinding page would send its own name); an action must be a JSON POST from the page's
   * own origin (403 cross-site or another Origin, 415 not JSON), so another site open in the same
   * browser cannot place or answer calls.
   */
  private async guard(ctx: Context, next: Next): Promise<void> {
    const host = ctx.get('Host');
    if (!isLoopbackHost(host) && !namesAddress(host, this.o.pageHost)) {
      return this.refuse(ctx, 421, `the sandbox answers only on a loopback address (127.0.0.1, localhost or [::1])${this.o.pageHost && !isLoopbackHost(this.o.pageHost) ? ` or ${this.o.pageHost}` : ''}`);
    }
    if (ctx.method === 'POST') {
      const site = ctx.get('Sec-Fetch-Site');
      if (site && site !== 'same-origin' && site !== 'none') return this.refuse(ctx, 403, `the sandbox's actions come from its own page only (Sec-Fetch-Site: ${printable(site, 20)})`);
      const origin = ctx.get('Origin');
      if (origin && origin !== `${ctx.protocol}://${host}`) return this.refuse(ctx, 403, "the sandbox's actions come from its own page only (another Origin)");
      if (!ctx.is('application/json')) return this.refuse(ctx, 415, 'the sandbox takes actions as JSON (Content-Type: application/json)');
    }
    return next();
  }

  private refuse(ctx: Context, status: number, error: string): void {
    this.refusals.warn({ ip: ctx.ip, method: ctx.method, path: ctx.path, status, host: printable(ctx.get('Host'), 100), origin: printable(ctx.get('Origin'), 100) || null }, 'sandbox: request refused');
    ctx.status = status;
    ctx.body = { error };
  }

  /** The keepalive, and the end of streams that stopped reading or are past their age. */
  private tick(): void {
    const now = Date.now();
    for (const [stream, c] of this.clients) {
      const piled = stream.writableLength + c.socket.writableLength;
      if (piled > this.limits.maxBufferedBytes || now - c.opened >= this.limits.maxAgeMs) {
        if (piled > this.limits.maxBufferedBytes) this.o.log.info({ buffered: piled }, 'sandbox: a page stopped reading its event stream; closed');
        this.clients.delete(stream);
        stream.end();
        c.socket.destroy();
      }
    }
    this.write(': keepalive\n\n');
  }

  private openStream(ctx: Context): void {
    if (this.clients.size >= this.limits.maxPages) {
      ctx.set('Retry-After', '5');
      return this.refuse(ctx, 503, `at most ${this.limits.maxPages} sandbox pages at once`);
    }
    const stream = new PassThrough();
    ctx.req.socket.setTimeout(0);
    ctx.req.socket.setNoDelay(true);
    ctx.set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
    ctx.status = 200;
    ctx.body = stream;
    const { o } = this;
    stream.write(sse('hello', { userNumber: o.userNumber, businessNumber: o.businessNumber, businessName: o.businessName, pbx: o.pbx }));
    for (const frame of this.history) stream.write(frame);
    for (const [id, prompt] of this.prompts) {
      if (this.o.sim.permissionRequestPending(id)) stream.write(sse('permission-request', prompt));
      else this.prompts.delete(id);
    }
    this.clients.set(stream, { opened: Date.now(), socket: ctx.req.socket });
    const drop = () => this.clients.delete(stream);
    ctx.req.once('close', drop);
    stream.once('close', drop);
  }

  /** Runs a page's action: JSON in, JSON out; a bad request is a 400 with its reason, anything else a 502. */
  private async act(ctx: Context, fn: (body: Record<string, unknown>) => Promise<unknown>): Promise<void> {
    const body = await jsonBody(ctx);
    if (!body) {
      this.o.log.warn({ path: ctx.path }, 'sandbox: phone action refused: body is not a JSON object');
      return;
    }
    try {
      ctx.body = await fn(body);
    } catch (err) {
      const bad = err instanceof BadRequest;
      ctx.status = bad ? 400 : 502;
      ctx.body = { error: (err as Error).message };
      this.o.log.warn({ err, path: ctx.path }, 'sandbox: phone action failed');
    }
  }

  private send(event: string, data: unknown): void {
    this.write(sse(event, data));
  }

  private write(frame: string): void {
    for (const c of this.clients.keys()) c.write(frame);
  }
}

/** Whether a Host header names this machine: 127.x.x.x, localhost or [::1], with or without a port. */
export function isLoopbackHost(host: string): boolean {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d{1,5})?$/.exec(host.trim().toLowerCase());
  const name = m?.[1] ?? m?.[2];
  if (!name) return false;
  if (m?.[1] !== undefined) return name === '::1';
  return name === 'localhost' || (net.isIPv4(name) && name.startsWith('127.'));
}

/** Whether a Host header names `address` (an IP address; IPv6 in brackets), with or without a port. */
export function namesAddress(host: string, address: string | undefined): boolean {
  if (!address) return false;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d{1,5})?$/.exec(host.trim().toLowerCase());
  const name = m?.[1] ?? m?.[2];
  return name !== undefined && name === address.toLowerCase();
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function sdpOf(body: Record<string, unknown>): string {
  const sdp = body.sdp;
  if (typeof sdp !== 'string' || !sdp.startsWith('v=0') || sdp.length > MAX_SDP) throw new BadRequest('sdp must be an SDP (v=0...) of at most 16 KiB');
  return sdp;
}

/** " (RINGING)" for a status webhook, "" otherwise. */
function statusOf(event: unknown): string {
  const e = event as { callingStatusUpdated?: { status?: unknown }; callingTerminate?: { status?: unknown } } | null;
  const s = e?.callingStatusUpdated?.status ?? e?.callingTerminate?.status;
  return typeof s === 'string' ? ` (${s})` : '';
}

import Srf from 'drachtio-srf';
import { CallEnded, CallEvent, CallRef } from '../../calls/call-events';
import { EventContext, sipEventContext } from '../../calls/event-context';
import { MetaSipMode, NumberDirectory, NumberRoute } from '../../calls/numbers-port';
import { BusinessLine, ConnectRequest, ProviderError } from '../../calls/provider-port';
import { Logger } from '../../log';
import { Metrics } from '../../metrics/metrics';
import { DigestAuth, DigestVerdict, SourceAllowList } from '../../sip/trust';
import { BSUID } from '../../util/numbers';
import { durationOf, metaHeader, META_HEADERS, offerFromInvite, sipCallKey, uriHost, uriUser } from './headers';
import { sessionRefreshAnswer } from './session-refresh';

/** The bridge-wide side of Meta's SIP (config.metaSip). */
export interface MetaSipBorderSettings {
  /** Meta's SIP domain: the Request-URI host of INVITEs to Meta ("wa.meta.vc"). */
  domain: string;
  /** Where INVITEs to Meta are sent (a SIP URI); null: drachtio-server resolves the domain. */
  proxy: string | null;
  /** The port of drachtio-server's TLS contact that is Meta's listener: TLS INVITEs arriving on it are Meta's. */
  listenPort: number;
  /** Source addresses (CIDR) Meta's INVITEs may come from; empty: any source that passes digest. */
  trustedSources: string[];
  /** The longest wait for Meta's first answer to an INVITE, and for each final step (bounded calls). */
  timeoutMs: number;
}

/** A SIP-mode number as its business calls need it. */
export interface SipNumber {
  sip: MetaSipMode;
  line: BusinessLine;
  /** Its provider account's name. */
  account: string;
}

/** Where the border's call events go: the call router (in the order each call's events come). */
export type CallEventSink = (event: CallEvent, ctx: EventContext) => Promise<void>;

/** One SIP call with Meta, either way: the dialog's state as the provider port's requests need it. */
interface Leg {
  direction: 'inbound' | 'outbound';
  /** The provider account of the number (its events' EventContext.provider). */
  account: string;
  phoneId: string;
  /** A user's call: Meta's INVITE, until answered or refused. */
  req?: Srf.SrfRequest;
  res?: Srf.SrfResponse;
  /** A business call: the INVITE sent, to CANCEL until a final answer. */
  sent?: Srf.SrfRequest;
  dialog: Srf.Dialog | null;
  /** A final answer was sent (inbound) or received (outbound). */
  final: boolean;
  /** The leg is over (BYE, CANCEL or a final failure, either way): said once. */
  over: boolean;
}

/**
 * The session border between Meta's SIP and the bridge's calls. Meta's INVITEs (over TLS, on its
 * listener) are authenticated with the number's SIP password and become `offered` events for the
 * router, as a webhook's would; the provider port's requests for a SIP-mode number (MetaSipProvider)
 * become SIP: 180, 200 with the bridge's answer, a refusal, BYE or CANCEL, and INVITEs to
 * `sip:+<user>@wa.meta.vc;transport=tls` that answer Meta's 407 with the same password. Meta never
 * gets a re-INVITE or UPDATE from the bridge: everything mid-call is the PBX leg's.
 */
export class MetaSipBorder {
  private readonly legs = new Map<string, Leg>();
  private readonly allow: SourceAllowList | null;
  private readonly digests = new Map<string, DigestAuth>();
  private sink: CallEventSink | null = null;

  constructor(
    private readonly srf: Srf,
    private readonly settings: MetaSipBorderSettings,
    private readonly numbers: () => NumberDirectory,
    private readonly log: Logger,
    private readonly metrics: Pick<Metrics, 'metaSipInvite'>,
  ) {
    this.allow = settings.trustedSources.length > 0 ? new SourceAllowList(settings.trustedSources) : null;
  }

  /** Where call events go (the router); set once the router exists. */
  attach(sink: CallEventSink): void {
    this.sink = sink;
  }

  /** SIP calls with Meta in progress. */
  get active(): number {
    return this.legs.size;
  }

  /**
   * Whether an INVITE is Meta's: it came over TLS on Meta's listener port (drachtio-server says where
   * it was received), and it names a number in SIP mode or comes from Meta's domain. A PBX may share
   * the TLS port: its agents' INVITEs dial customers, not the business's SIP numbers, and go to the
   * agents' door with its rules (trusted sources, digest).
   */
  isMetaInvite(req: Srf.SrfRequest): boolean {
    if (String(req.protocol).toLowerCase() !== 'tls') return false;
    const on = (req as unknown as { receivedOn?: string }).receivedOn;
    const port = on ? Number(/:(\d+)$/.exec(on)?.[1]) : NaN;
    if (Number.isFinite(port) && port !== this.settings.listenPort) return false;
    const user = uriUser(req.uri);
    if (user && this.numbers().bySipUser(user)) return true;
    const from = /<([^>]+)>/.exec(req.get('From'))?.[1] ?? req.get('From');
    return uriHost(from) === this.settings.domain.toLowerCase();
  }

  /**
   * Meta's INVITE (a WhatsApp user calls a SIP-mode number): refused before any media is allocated
   * unless it comes from an allowed source, names a SIP-mode number and carries that number's digest.
   */
  onInvite(req: Srf.SrfRequest, res: Srf.SrfResponse): void {
    const source = req.source_address;
    if (this.allow && !this.allow.allows(source)) {
      this.log.warn({ source }, 'Meta SIP: INVITE from a source outside META_SIP_TRUSTED_SOURCES refused');
      this.metrics.metaSipInvite('refused_source');
      res.send(403, 'Forbidden', {});
      return;
    }
    const user = uriUser(req.uri);
    const route = user ? this.numbers().bySipUser(user) : null;
    if (!route?.sip) {
      this.log.warn({ source, dialled: user }, 'Meta SIP: INVITE for no number in SIP mode refused');
      this.metrics.metaSipInvite('refused_number');
      res.send(404, 'Not Found', {});
      return;
    }
    const verdict = this.digestFor(route.sip).verify('INVITE', req.uri, req.get('Authorization') || undefined);
    if (verdict !== 'ok') return this.challenge(res, route, verdict, source);
    if (!req.body || !/^m=audio /m.test(req.body)) {
      this.metrics.metaSipInvite('refused_sdp');
      res.send(488, 'Not Acceptable Here', { headers: { Reason: 'SIP;cause=488;text="no audio offer"' } });
      return;
    }
    const offer = offerFromInvite(req, route);
    if (this.legs.has(offer.wacid)) {
      // A second INVITE for a call already taken (a retransmission is absorbed by the SIP stack).
      this.metrics.metaSipInvite('refused_duplicate');
      res.send(482, 'Loop Detected', {});
      return;
    }
    const leg: Leg = { direction: 'inbound', account: route.providerName, phoneId: offer.phoneId, req, res, dialog: null, final: false, over: false };
    this.legs.set(offer.wacid, leg);
    this.metrics.metaSipInvite('accepted');
    req.on('cancel', () => {
      leg.final = true;
      this.over(offer.wacid, leg, { cause: 'CANCELLED', durationS: null });
    });
    this.deliver(offer, leg.account, 'invite', offer.wacid);
  }

  /** The user's call rings at the business (the provider port's pre-accept): 180, no SDP. */
  ringing(call: CallRef): void {
    const leg = this.legs.get(call.wacid);
    if (leg?.res && !leg.final && !leg.res.finalResponseSent) leg.res.send(180, 'Ringing', {});
  }

  /** The business answered the user's call: 200 with the bridge's answer; resolves once sent. */
  async answer(call: CallRef, sdp: string): Promise<void> {
    const leg = this.liveInbound(call);
    leg.final = true;
    // The dialog is kept whenever it comes, even after the wait below gave up: a call that ended
    // meanwhile gets its BYE then, rather than leaving Meta a dialog nobody ends.
    const uas = this.srf.createUAS(leg.req!, leg.res!, { localSdp: sdp }).then((dialog) => {
      if (leg.over) dialog.destroy();
      else this.hold(call.wacid, leg, dialog);
    });
    await bounded(uas, this.settings.timeoutMs, 'Meta SIP: 200 OK to Meta not confirmed');
  }

  /** The business turns the user's call away before answering. Safe to repeat. */
  refuse(call: CallRef, status = 480, reason = 'Temporarily Unavailable'): void {
    const leg = this.legs.get(call.wacid);
    if (!leg || leg.direction !== 'inbound' || leg.final || leg.res?.finalResponseSent) return;
    leg.final = true;
    leg.res!.send(status, reason, {});
    this.forget(call.wacid, leg);
  }

  /** The business ends a call, answered or not (BYE; CANCEL for a business call still ringing). Safe to repeat. */
  async end(call: CallRef): Promise<void> {
    const leg = this.legs.get(call.wacid);
    if (!leg || leg.over) return;
    if (leg.dialog) {
      leg.over = true;
      this.forget(call.wacid, leg);
      const dialog = leg.dialog;
      const bye = new Promise<void>((resolve, reject) => dialog.destroy(undefined, (err: unknown) => (err ? reject(err as Error) : resolve())));
      await bounded(bye, this.settings.timeoutMs, 'Meta SIP: BYE not answered').catch((err: unknown) => this.log.warn({ err, wacid: call.wacid }, 'Meta SIP: BYE to Meta failed'));
    } else if (leg.direction === 'inbound' && !leg.final) {
      this.refuse(call);
    } else {
      // A business call still ringing is cancelled; a 200 on its way (either way) meets `over` and is ended.
      leg.over = true;
      this.forget(call.wacid, leg);
      if (leg.direction === 'outbound' && leg.sent && !leg.final) leg.sent.cancel(() => undefined);
    }
  }

  /**
   * A business call: the INVITE to Meta, answering its 407 with the number's password. Resolves with
   * the call's name once Meta first answers (18x or 200: its wacid when it gives one, else one made of
   * the Call-ID); a refusal before that is a ProviderError with the SIP status. Later answers become
   * events: 180 ringing, 200 the user's SDP answer and acceptance, a final failure the call's end.
   */
  place(number: SipNumber, c: ConnectRequest): Promise<{ wacid: string }> {
    const { sip, line } = number;
    if (BSUID.test(c.to)) {
      return Promise.reject(new ProviderError('Meta SIP: a user known only by a BSUID cannot be called over SIP', 'Meta SIP', 400, 'bsuid', null, null));
    }
    const digits = c.to.replace(/^\+/, '');
    const uri = `sip:+${digits}@${this.settings.domain};transport=tls`;
    const from = `<sip:+${line.number.replace(/^\+/, '')}@${sip.hostname}>`;
    return new Promise((resolve, reject) => {
      let key: string | null = null;
      let callId = '';
      const leg: Leg = { direction: 'outbound', account: number.account, phoneId: line.phoneId ?? '', dialog: null, final: false, over: false };
      const named = (wacid: string | null) => {
        if (key) return key;
        key = sipCallKey(wacid, callId);
        this.legs.set(key, leg);
        clearTimeout(timer);
        resolve({ wacid: key });
        return key;
      };
      const timer = setTimeout(() => {
        if (key) return;
        leg.over = true;
        leg.sent?.cancel(() => undefined);
        reject(new ProviderError(`Meta SIP: no answer to the INVITE within ${this.settings.timeoutMs} ms`, 'Meta SIP', null, 'timeout', null, null, true));
      }, this.settings.timeoutMs);
      this.srf.createUAC(uri, {
        localSdp: c.sdpOffer,
        headers: { From: from, 'User-Agent': 'wa-sip-bridge' },
        auth: { username: sip.username, password: sip.password },
        ...(this.settings.proxy ? { proxy: this.settings.proxy } : {}),
      } as Srf.CreateUACOptions, {
        cbRequest: ((err: unknown, sent: Srf.SrfRequest) => {
          if (err || !sent) return;
          leg.sent = sent;
          callId = sent.get('Call-ID');
          // Answering Meta's 407 sends the INVITE again: a CANCEL must name the new one.
          (sent as unknown as NodeJS.EventEmitter).on('authenticate', (again: Srf.SrfRequest) => {
            leg.sent = again;
          });
        }) as unknown as (req: Srf.SrfRequest) => void,
        cbProvisional: (prov: Srf.SrfResponse) => {
          if (prov.status === 100) return;
          const k = named(metaHeader(prov, META_HEADERS.wacid));
          if (prov.status === 180 || prov.status === 183) this.deliver({ kind: 'status', wacid: k, phoneId: leg.phoneId || null, progress: 'ringing', status: `SIP ${prov.status}` }, leg.account, 'ringing', k);
        },
      }).then((dialog: Srf.Dialog) => {
        // drachtio-srf keeps the 200 OK on the dialog (untyped): Meta's wacid may be on it.
        const ok = (dialog as unknown as { res?: Srf.SrfResponse }).res;
        const k = named(ok ? metaHeader(ok, META_HEADERS.wacid) : null);
        leg.final = true;
        if (leg.over) {
          dialog.destroy();
          return;
        }
        this.hold(k, leg, dialog);
        this.deliver({ kind: 'answered', wacid: k, phoneId: leg.phoneId, sdpType: 'answer', sdp: dialog.remote.sdp, from: line.number, to: c.to, context: null }, leg.account, 'answered', k);
        this.deliver({ kind: 'status', wacid: k, phoneId: leg.phoneId || null, progress: 'accepted', status: 'SIP 200' }, leg.account, 'accepted', k);
      }, (err: { status?: number; reason?: string; message?: string; res?: Srf.SrfResponse }) => {
        leg.final = true;
        const status = typeof err.status === 'number' ? err.status : null;
        const declined = status === 486 || status === 600 || status === 603;
        if (!key && (!declined || leg.over)) {
          clearTimeout(timer);
          if (!leg.over) reject(refusalError(status, err.reason ?? err.message ?? 'INVITE failed'));
          return;
        }
        // The user turned the call down (busy, declined), even before it rang: the call existed at
        // WhatsApp, so it is named and ends as declined, as its webhooks would say on a Graph number.
        key ??= named(err.res ? metaHeader(err.res, META_HEADERS.wacid) : null);
        if (declined) {
          this.deliver({ kind: 'status', wacid: key, phoneId: leg.phoneId || null, progress: 'rejected', status: `SIP ${status}` }, leg.account, 'rejected', key);
        }
        this.over(key, leg, { cause: status === null ? 'FAILED' : `SIP ${status}`, durationS: null });
      });
    });
  }

  /** An answered dialog: Meta's BYE ends the call; its re-INVITEs and UPDATEs are answered, never sent. */
  private hold(wacid: string, leg: Leg, dialog: Srf.Dialog): void {
    leg.dialog = dialog;
    // drachtio-srf sets remote.sdp to a re-INVITE's before the handler runs: the agreed one is kept here.
    const agreed = dialog.remote.sdp;
    dialog.on('destroy', (bye: Srf.SrfRequest | undefined) => this.over(wacid, leg, { cause: 'COMPLETED', durationS: durationOf(bye) }));
    const answer = (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
      const a = sessionRefreshAnswer(dialog.local.sdp, agreed, req.body);
      if (req.method === 'INVITE') dialog.remote.sdp = agreed;
      if (a.ok) res.send(200, { body: a.sdp, headers: { 'Content-Type': 'application/sdp' } });
      else {
        this.log.warn({ wacid, method: req.method }, `Meta SIP: ${req.method} that changes the media refused (${a.why})`);
        res.send(488, 'Not Acceptable Here', {});
      }
    };
    dialog.on('modify', answer);
    dialog.on('update', answer);
  }

  /** The leg ended at Meta's end (or failed): the call hears it as WhatsApp's end. */
  private over(wacid: string, leg: Leg, how: { cause: string; durationS: number | null }): void {
    if (leg.over) return;
    leg.over = true;
    this.forget(wacid, leg);
    const ended: CallEnded = { kind: 'ended', wacid, phoneId: leg.phoneId || null, cause: how.cause, durationS: how.durationS, startedAt: null, endedAt: Date.now() };
    this.deliver(ended, leg.account, 'ended', wacid);
  }

  private forget(wacid: string, leg: Leg): void {
    if (this.legs.get(wacid) === leg) this.legs.delete(wacid);
  }

  private liveInbound(call: CallRef): Leg {
    const leg = this.legs.get(call.wacid);
    if (!leg || leg.direction !== 'inbound' || leg.over || leg.final) {
      throw new ProviderError(`Meta SIP: call ${call.wacid} is no longer waiting for an answer`, 'Meta SIP', 481, 'no_call', null, null);
    }
    return leg;
  }

  private deliver(event: CallEvent, account: string, type: string, key: string): void {
    const sink = this.sink;
    if (!sink) {
      this.log.error({ type, key }, 'Meta SIP: an event came before the router was attached: dropped');
      return;
    }
    sink(event, sipEventContext(account, `sip.${type}`, key)).catch((err: unknown) => this.log.error({ err, type, key }, 'Meta SIP: event not processed'));
  }

  private challenge(res: Srf.SrfResponse, route: NumberRoute, verdict: DigestVerdict, source: string): void {
    if (verdict === 'missing' || verdict === 'stale') {
      this.metrics.metaSipInvite('challenged');
      res.send(401, 'Unauthorized', { headers: { 'WWW-Authenticate': this.digestFor(route.sip!).challenge(verdict === 'stale') } });
      return;
    }
    this.log.warn({ source, number: route.name, verdict }, 'Meta SIP: INVITE with wrong digest credentials refused');
    this.metrics.metaSipInvite('refused_credentials');
    res.send(403, 'Forbidden', {});
  }

  /** One digest checker per number and password (nonces signed with it, so any node verifies any node's). */
  private digestFor(sip: MetaSipMode): DigestAuth {
    const k = `${sip.hostname}\0${sip.username}\0${sip.password}`;
    let d = this.digests.get(k);
    if (!d) {
      d = new DigestAuth({ username: sip.username, password: sip.password, realm: sip.hostname });
      this.digests.set(k, d);
    }
    return d;
  }
}

/**
 * Meta's refusal of a business call before it rang, as the calls read a provider's: the SIP status,
 * and WhatsApp's error code where the status says the same (404: not on WhatsApp, 486: busy or limited).
 */
function refusalError(status: number | null, reason: string): ProviderError {
  const code = status === 404 || status === 604 ? 138001 : status === 486 || status === 600 ? 138002 : null;
  return new ProviderError(`Meta SIP: INVITE refused${status ? ` with ${status}` : ''} (${reason})`, 'Meta SIP', status, status === null ? null : String(status), null, code);
}

/** A promise with a deadline. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new ProviderError(`${what} within ${ms} ms`, 'Meta SIP', null, 'timeout', null, null, true)), ms);
    }),
  ]);
}

import { Logger } from '../log';
import { withTimeout } from '../sip/dialog-requests';
import { BusinessCallAction, BusinessCallInfo, MetaSipCall, MetaSipSim, WebRtcReply } from './simulator/meta-sip';

/** How long the page's accept waits for the sim's 200 OK to be sent. */
const ANSWER_BOUND_MS = 10_000;

export interface MetaSipPhoneOptions {
  sim: MetaSipSim;
  /** The WhatsApp user the page plays, and the business it calls. */
  userNumber: string;
  businessNumber: string;
  log: Logger;
  /** An event to every open page (answer, accepted, incoming, ended). */
  send(event: string, data: unknown): void;
  /** A line of the pages' timeline (kind `meta`: what Meta's SIP gateway did). */
  note(title: string, wacid: string, detail?: unknown): void;
}

/** A business's call ringing on the page: the sim's WebRTC offer was sent, the page's reply is awaited. */
interface Ringing {
  call: MetaSipCall;
  answer: string | null;
  reply(r: WebRtcReply): void;
}

/** A request the page got wrong (400). */
export class PhoneRequestError extends Error {}

/**
 * The browser phone's calls in `--provider meta-sip`: the page is the WhatsApp user behind the Meta SIP
 * simulator. Its WebRTC offer becomes Meta's INVITE to the bridge (the sim's rtpengine doing WebRTC on
 * the user's leg and Meta's SRTP on the bridge's), the sim's answer goes back to the page; a business's
 * INVITE rings the page with a WebRTC offer and the page's answer becomes Meta's 200 OK. The page's
 * protocol is the same as with the HTTP providers; only what is behind it is SIP.
 */
export class MetaSipPhone {
  private readonly calls = new Map<string, MetaSipCall>();
  private readonly ringing = new Map<string, Ringing>();

  constructor(private readonly o: MetaSipPhoneOptions) {
    o.sim.onBusinessCall((info) => this.businessCalls(info));
    o.sim.on('tlsRefused', (r) => o.log.warn(r, "sandbox: Meta's SIP simulator refuses the bridge's certificate"));
  }

  /** The page's user calls the business: Meta's INVITE to the bridge, with the page's offer behind it. */
  place(offer: string): { wacid: string } {
    const { o } = this;
    const call = o.sim.userCalls({
      from: o.userNumber, to: o.businessNumber,
      webrtc: {
        offer,
        onAnswer: (sdp, stage) => o.send('answer', { wacid: call.wacid, sdp, stage: stage === 'early' ? 'preAccept' : 'accept' }),
      },
    });
    this.track(call, `INVITE sip:${o.businessNumber}@… over TLS to the bridge (wacid ${call.wacid.slice(0, 18)}…)`);
    call.on('answered', () => o.send('accepted', { wacid: call.wacid }));
    return { wacid: call.wacid };
  }

  /** Whether this wacid is one of the sim's calls (the page's actions on it are SIP). */
  has(wacid: string): boolean {
    return this.calls.has(wacid);
  }

  async act(wacid: string, action: string, body: { sdp?: string }): Promise<unknown> {
    const call = this.calls.get(wacid);
    if (!call) throw new PhoneRequestError('no call with this wacid');
    const ring = this.ringing.get(wacid);
    switch (action) {
      case 'ringing':
        if (!ring) throw new PhoneRequestError('no agent call ringing with this wacid');
        // Meta has sent 180 already; the page's answer waits for the user to pick up.
        ring.answer = body.sdp ?? null;
        return {};
      case 'accept': {
        if (!ring?.answer) throw new PhoneRequestError('no agent call ringing with this wacid, or no answer SDP given while ringing');
        this.ringing.delete(wacid);
        ring.reply({ answer: ring.answer });
        await withTimeout(call.answered, ANSWER_BOUND_MS, `Meta's 200 OK not sent within ${ANSWER_BOUND_MS} ms`);
        return {};
      }
      case 'decline':
        if (!ring) throw new PhoneRequestError('no agent call ringing with this wacid');
        this.ringing.delete(wacid);
        ring.reply({ action: 'decline' });
        await withTimeout(call.ended, ANSWER_BOUND_MS, `Meta's 603 not sent within ${ANSWER_BOUND_MS} ms`);
        return {};
      case 'hangup':
        if (ring) {
          this.ringing.delete(wacid);
          ring.reply({ action: 'decline' });
        } else {
          await call.hangup();
        }
        return {};
      default:
        throw new PhoneRequestError(`unknown action ${action}`);
    }
  }

  /** A business's INVITE reached Meta: every open page rings with the sim's WebRTC offer. */
  private businessCalls(info: BusinessCallInfo): BusinessCallAction {
    const call = this.o.sim.calls.find((c) => c.wacid === info.wacid);
    if (!call) return { action: 'decline' };
    this.track(call, `INVITE from the bridge for ${info.to}: digest checked, the page rings (180)`);
    return {
      action: 'webrtc',
      ring: (offer) => new Promise<WebRtcReply>((reply) => {
        this.ringing.set(call.wacid, { call, answer: null, reply });
        this.o.send('incoming', { wacid: call.wacid, from: info.from, to: info.to, offer });
      }),
    };
  }

  /** Keeps the call for the page's actions, notes its steps in the timeline, and tells the pages its end. */
  private track(call: MetaSipCall, first: string): void {
    const { o } = this;
    this.calls.set(call.wacid, call);
    o.note(first, call.wacid, { callId: call.callId, headers: call.inviteHeaders });
    call.on('provisional', (status) => o.note(`${call.direction === 'user-initiated' ? 'bridge →' : '→ bridge'} ${status}`, call.wacid));
    call.on('answered', () => o.note(`200 OK ${call.direction === 'user-initiated' ? 'from the bridge' : 'to the bridge'}: media held until the business's first packet`, call.wacid, { sdp: call.localSdp, remoteSdp: call.remoteSdp }));
    call.on('media', () => o.note("the business's first packet reached Meta: the user's media flows", call.wacid, call.packetsAtFirstMedia));
    call.on('refused', (method) => o.note(`${method} from the bridge answered 488 (Meta takes none)`, call.wacid));
    void call.ended.then((end) => {
      const ring = this.ringing.get(call.wacid);
      this.ringing.delete(call.wacid);
      ring?.reply({ action: 'decline' });
      o.note(`call over (${end.by}): ${end.reason}`, call.wacid, end);
      o.send('ended', { wacid: call.wacid, by: end.by === 'business' ? 'business' : 'user', reason: end.by === 'user' ? 'you ended the call' : end.by === 'business' ? 'the business ended the call' : end.reason });
      // Kept a little while: a late hang-up from the page still finds the call (and is a no-op).
      setTimeout(() => this.calls.delete(call.wacid), 60_000).unref();
    });
  }
}

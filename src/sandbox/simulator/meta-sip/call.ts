import { TypedEmitter } from '../../../util/typed-emitter';
import type { CallCounters, CallEnd, RtpAddress } from './types';

export interface MetaSipCallEvents {
  /** A provisional response (user-initiated calls: the bridge's 18x). */
  provisional: [status: number];
  /** 200 OK received and ACKed (user-initiated) or sent (business-initiated); `phoneTarget` is set. */
  answered: [];
  /** The business's first packet reached Meta: the sim let the user's media go. */
  media: [];
  ended: [end: CallEnd];
  /** A request Meta does not take in a call (re-INVITE, UPDATE), answered 488. */
  refused: [method: string];
}

/** What the sim does for a handle's hangup and cancel (set by the sim that owns the call). */
export interface CallActions {
  hangup(call: MetaSipCall): Promise<void>;
  cancel(call: MetaSipCall): Promise<void>;
}

/**
 * One call through the Meta SIP simulator, either way. Tests and the sandbox watch it (promises and
 * events) and act for the WhatsApp user (hangup, cancel); the sim fills in what happened.
 */
export class MetaSipCall extends TypedEmitter<MetaSipCallEvents> {
  /** Responses 100-199 received (user-initiated) or sent (business-initiated), in order. */
  readonly provisional: number[] = [];
  readonly counters: CallCounters = { reinvitesRefused: 0, updatesRefused: 0, options: 0 };
  /** Where the user's phone must send its plain RTP (the sim rtpengine's phone side); null until known. */
  phoneTarget: RtpAddress | null = null;
  /** The SDP the sim sent the bridge (offer or answer), once sent. */
  localSdp: string | null = null;
  /** The bridge's SDP (its answer, or its offer), once received. */
  remoteSdp: string | null = null;
  /** The INVITE's headers: as sent (user-initiated) or as received (business-initiated). */
  inviteHeaders: Record<string, string> = {};
  answeredAt: number | null = null;
  endedWith: CallEnd | null = null;
  /** RTP packets the sim's rtpengine had from each side when the business's first packet was seen. */
  packetsAtFirstMedia: { user: number; business: number } | null = null;

  readonly answered: Promise<void>;
  readonly ended: Promise<CallEnd>;
  private resolveAnswered!: () => void;
  private rejectAnswered!: (err: Error) => void;
  private resolveEnded!: (end: CallEnd) => void;
  private first: 'business' | null = null;

  constructor(
    readonly direction: 'user-initiated' | 'business-initiated',
    readonly wacid: string,
    /** The SIP Call-ID, also the call's id on the sim's rtpengine. */
    readonly callId: string,
    /** The business number, E.164. */
    readonly business: string,
    /** The WhatsApp user, E.164. */
    readonly user: string,
    private readonly actions: CallActions,
  ) {
    super();
    this.answered = new Promise<void>((resolve, reject) => {
      this.resolveAnswered = resolve;
      this.rejectAnswered = reject;
    });
    // Awaiting `answered` is optional: an unanswered call must not count as an unhandled rejection.
    this.answered.catch(() => undefined);
    this.ended = new Promise<CallEnd>((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get isAnswered(): boolean {
    return this.answeredAt !== null;
  }

  get isEnded(): boolean {
    return this.endedWith !== null;
  }

  /** 'business' once the bridge's media reached Meta (always first: Meta holds its own back); null before. */
  firstPacketFrom(): 'business' | null {
    return this.first;
  }

  /** The call's length so far (answered calls), whole seconds: Meta's `x-wa-meta-call-duration`. */
  durationSeconds(): number {
    return this.answeredAt === null ? 0 : Math.max(0, Math.round((Date.now() - this.answeredAt) / 1000));
  }

  /** The WhatsApp user hangs up: BYE from Meta when answered (with wacid and duration), else CANCEL or a decline. */
  hangup(): Promise<void> {
    return this.actions.hangup(this);
  }

  /** The WhatsApp user gives up before the answer (user-initiated calls: CANCEL). */
  cancel(): Promise<void> {
    return this.actions.cancel(this);
  }

  /** @internal */
  markProvisional(status: number): void {
    this.provisional.push(status);
    this.emit('provisional', status);
  }

  /** @internal */
  markAnswered(): void {
    if (this.answeredAt !== null || this.endedWith) return;
    this.answeredAt = Date.now();
    this.resolveAnswered();
    this.emit('answered');
  }

  /** @internal */
  markFirstMedia(packets: { user: number; business: number }): void {
    if (this.first) return;
    this.first = 'business';
    this.packetsAtFirstMedia = packets;
    this.emit('media');
  }

  /** @internal */
  markRefused(method: 'INVITE' | 'UPDATE'): void {
    if (method === 'INVITE') this.counters.reinvitesRefused++;
    else this.counters.updatesRefused++;
    this.emit('refused', method);
  }

  /** @internal Ends the call once; later calls are ignored. */
  markEnded(end: CallEnd): boolean {
    if (this.endedWith) return false;
    this.endedWith = end;
    if (this.answeredAt === null) this.rejectAnswered(new Error(`call ended before the answer: ${end.reason}`));
    this.resolveEnded(end);
    this.emit('ended', end);
    return true;
  }
}

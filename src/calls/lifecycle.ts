/**
 * The states of a bridged call and the moves between them, in one table. Both call kinds use it;
 * each move also sets the CDR's `state` column and appends a timeline event (see BridgedCall.transition).
 *
 *   offered ──▶ pre_accepted ──▶ ringing ──▶ answered ──▶ accepted ◀──▶ held
 *      │             │              │   └──▶ early_media ──┘    ▲  └──▶ transferring ──┘
 *      └──▶ connecting ──▶ ringing  (outbound: calls/connect, then WhatsApp rings)
 *   any state ──▶ ended
 *
 * - offered:      inbound: connect webhook taken; outbound: the agent's INVITE taken.
 * - pre_accepted: inbound: WhatsApp leg pre-accepted (ICE/DTLS up), PBX being dialled.
 * - connecting:   outbound: calls/connect sent, waiting for WhatsApp.
 * - ringing:      the far end rings (PBX 18x inbound; RINGING webhook outbound).
 * - early_media:  inbound with PBX_EARLY_MEDIA=accept: WhatsApp accepted on the PBX's 183, the caller
 *                 hears announcements; the agent has not answered yet.
 * - answered:     inbound: the PBX said 200, accept is on its way to YCloud.
 * - accepted:     both legs up, audio both ways.
 * - held:         the PBX put the WhatsApp user on hold (re-INVITE sendonly/inactive/0.0.0.0).
 * - transferring: the PBX asked for a transfer (REFER); the new PBX leg is being dialled.
 * - ended:        both legs down, CDR final.
 */
export type CallState =
  | 'offered' | 'pre_accepted' | 'connecting' | 'ringing' | 'early_media'
  | 'answered' | 'accepted' | 'held' | 'transferring' | 'ended';

export const TRANSITIONS: Readonly<Record<CallState, readonly CallState[]>> = {
  offered: ['pre_accepted', 'connecting', 'accepted', 'ended'],
  pre_accepted: ['ringing', 'early_media', 'answered', 'ended'],
  connecting: ['ringing', 'accepted', 'ended'],
  ringing: ['early_media', 'answered', 'accepted', 'ended'],
  early_media: ['answered', 'accepted', 'ended'],
  answered: ['accepted', 'ended'],
  accepted: ['held', 'transferring', 'ended'],
  held: ['accepted', 'transferring', 'ended'],
  transferring: ['accepted', 'held', 'ended'],
  ended: [],
};

/** States in which both legs are bridged and mid-call requests from the PBX are handled. */
export const IN_CALL: ReadonlySet<CallState> = new Set(['accepted', 'held', 'transferring']);

export class IllegalTransition extends Error {
  constructor(readonly from: CallState, readonly to: CallState) {
    super(`illegal call state change ${from} -> ${to}`);
    this.name = 'IllegalTransition';
  }
}

/** Holds one call's state; `to()` refuses a move the table does not allow. */
export class Lifecycle {
  private current: CallState = 'offered';

  get state(): CallState {
    return this.current;
  }

  can(to: CallState): boolean {
    return TRANSITIONS[this.current].includes(to);
  }

  to(to: CallState): void {
    if (!this.can(to)) throw new IllegalTransition(this.current, to);
    this.current = to;
  }

  is(...states: CallState[]): boolean {
    return states.includes(this.current);
  }
}

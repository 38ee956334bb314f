/**
 * The two legs of a bridged call, each with its own small state beside the call's lifecycle
 * (lifecycle.ts): what the call's outcome is read from, instead of flags. A move a leg's table does not
 * allow is refused (false) and reported by the call.
 */

/**
 * The WhatsApp leg.
 *   inbound:  offered ─▶ pre_accepted ─▶ accepting ─▶ accepted
 *                                            └──▶ accept_unknown (accept got no answer: it may have been applied)
 *   outbound: placing ─▶ ringing ─▶ accepted        (WhatsApp's ACCEPTED; its SDP answer may come before or after)
 *                 └────────┴──▶ declined            (REJECTED: the terminate that follows ends it)
 *   any ─▶ ended (WhatsApp ended it, or the bridge did)
 */
export type WhatsAppLegState = 'offered' | 'pre_accepted' | 'accepting' | 'accepted' | 'accept_unknown' | 'placing' | 'ringing' | 'declined' | 'ended';

const WA_MOVES: Readonly<Record<WhatsAppLegState, readonly WhatsAppLegState[]>> = {
  offered: ['pre_accepted', 'ended'],
  pre_accepted: ['accepting', 'ended'],
  accepting: ['accepted', 'accept_unknown', 'pre_accepted', 'ended'],
  accepted: ['ended'],
  accept_unknown: ['ended'],
  placing: ['ringing', 'accepted', 'declined', 'ended'],
  ringing: ['accepted', 'declined', 'ended'],
  declined: ['ended'],
  ended: [],
};

/**
 * The PBX leg.
 *   inbound:  idle ─▶ inviting ─▶ early ─▶ answered          (the bridge's INVITE; 18x; 200; failover: inviting again)
 *                        └────────┴──▶ no_answer             (PBX_NO_ANSWER_TIMEOUT: the INVITE is cancelled; a crossing 200 still answers)
 *   outbound: invited ─▶ answering ─▶ answered               (the agent's INVITE; the 200 on its way; sent)
 *                └──▶ cancelled                              (the agent hung up first: CANCEL)
 *   any ─▶ ended
 */
export type PbxLegState = 'idle' | 'inviting' | 'early' | 'no_answer' | 'invited' | 'answering' | 'cancelled' | 'answered' | 'ended';

const PBX_MOVES: Readonly<Record<PbxLegState, readonly PbxLegState[]>> = {
  idle: ['inviting', 'ended'],
  inviting: ['early', 'answered', 'no_answer', 'inviting', 'ended'],
  early: ['answered', 'no_answer', 'inviting', 'ended'],
  // A 200 can cross the CANCEL that the no-answer timer sent.
  no_answer: ['answered', 'ended'],
  invited: ['answering', 'cancelled', 'ended'],
  answering: ['answered', 'invited', 'ended'],
  cancelled: ['ended'],
  answered: ['ended'],
  ended: [],
};

/** One leg's state, with every state it has been in. */
export class LegState<S extends string> {
  private current: S;
  private readonly seen = new Set<S>();

  constructor(private readonly moves: Readonly<Record<S, readonly S[]>>, initial: S) {
    this.current = initial;
    this.seen.add(initial);
  }

  get state(): S {
    return this.current;
  }

  is(...states: S[]): boolean {
    return states.includes(this.current);
  }

  /** Whether the leg has ever been in this state. */
  reached(state: S): boolean {
    return this.seen.has(state);
  }

  /** Moves the leg; false (nothing changes) for a move its table does not allow. Staying put is allowed. */
  to(next: S): boolean {
    if (next === this.current) return true;
    if (!this.moves[this.current].includes(next)) return false;
    this.current = next;
    this.seen.add(next);
    return true;
  }
}

export function whatsAppLeg(initial: 'offered' | 'placing'): LegState<WhatsAppLegState> {
  return new LegState(WA_MOVES, initial);
}

export function pbxLeg(initial: 'idle' | 'invited'): LegState<PbxLegState> {
  return new LegState(PBX_MOVES, initial);
}

import { Direction } from '../cdr/models';
import { CallState } from './lifecycle';

/** A call in progress as the operator API shows it. */
export interface LiveCall {
  id: string;
  direction: Direction;
  /** YCloud's call id; null for an agent's call YCloud has not named yet. */
  wacid: string | null;
  state: CallState;
  customerNumber: string | null;
  businessNumber: string | null;
  agent: string | null;
  sipCallId: string | null;
  /** When the call was offered (webhook or INVITE), ISO 8601. */
  startedAt: string;
  /** Seconds since it was offered. */
  durationSeconds: number;
  /** Seconds since both legs were connected; null before. */
  talkSeconds: number | null;
}

/** What the API needs from the calls in progress. */
export interface LiveCalls {
  list(): LiveCall[];
  /** Ends a call in progress from the bridge's side; false when no such call is in progress. */
  hangup(id: string): Promise<boolean>;
}

import assert from 'node:assert/strict';
import { CallRecord } from '../../src/cdr/models';

/**
 * Both bounds on an answered call's talk time, from its own CDR timestamps: talk_seconds is
 * accepted_at -> ended_at (to the millisecond), and the ringing before it (offered_at -> accepted_at,
 * at least `rangAtLeastS` by the test's construction: a PBX that rings, a user who takes a moment) is
 * not in it. A lower bound alone passes ring time billed as talk.
 */
export function assertTalkTime(row: CallRecord, rangAtLeastS: number): void {
  assert.ok(row.offered_at && row.accepted_at && row.ended_at, 'offered, accepted and ended');
  const talk = Number(row.talk_seconds);
  const acceptedToEnded = (row.ended_at.getTime() - row.accepted_at.getTime()) / 1000;
  const offeredToEnded = (row.ended_at.getTime() - row.offered_at.getTime()) / 1000;
  const rang = offeredToEnded - acceptedToEnded;
  assert.ok(rang >= rangAtLeastS, `the call rang ${rang.toFixed(3)} s before it was accepted (the test makes it ring ${rangAtLeastS} s at least)`);
  assert.ok(Math.abs(talk - acceptedToEnded) <= 0.002, `talk_seconds ${row.talk_seconds} is accepted -> ended (${acceptedToEnded.toFixed(3)} s)`);
  assert.ok(talk <= offeredToEnded - rangAtLeastS, `talk_seconds ${row.talk_seconds} leaves out the ${rang.toFixed(3)} s of ringing (offered -> ended ${offeredToEnded.toFixed(3)} s)`);
}

import Srf from 'drachtio-srf';
import { TimeoutError } from './dialog-requests';
import { byeInLostDialog, DialogIds, dialogIds, requestInLostDialog } from './out-of-dialog';

/** OPTIONS CSeqs: above any the dialog can have used (RFC 3261 12.2.2), below the BYE's. */
let probeCseq = 1900000000;

/**
 * Whether drachtio-server can no longer send in this dialog: the connection the dialog was made on
 * is gone (drachtio-server restarted, or the bridge lost it and reconnected since). drachtio-srf
 * would send its BYE on that dead connection, and a restarted drachtio-server knows no dialogs.
 */
export function dialogLost(dialog: Srf.Dialog): boolean {
  const socket = (dialog as unknown as { socket?: { destroyed?: boolean } }).socket;
  return socket?.destroyed === true;
}

/** A dialog's identifiers, read while drachtio-srf still has the dialog. */
const probed = new WeakMap<Srf.Dialog, DialogIds>();

/**
 * Asks the PBX whether a lost dialog is still up: drachtio-server answers the PBX's BYE in a dialog it
 * does not know with 481 and tells nobody, so the bridge asks instead, with an OPTIONS carrying the
 * dialog's identifiers (RFC 3261 12.2.1: a PBX answers 481 for a dialog it has ended). 'gone' only on
 * that 481; any other answer or none is not proof of anything.
 */
export async function dialogStillUp(srf: Srf, dialog: Srf.Dialog, timeoutMs: number): Promise<'up' | 'gone' | 'unknown'> {
  let ids = probed.get(dialog);
  if (!ids) {
    const read = dialogIds(dialog);
    if (!read) return 'unknown';
    probed.set(dialog, (ids = read));
  }
  return requestInLostDialog(srf, ids, 'OPTIONS', ++probeCseq, timeoutMs).then(
    (status) => (status === 481 ? 'gone' : status < 300 ? 'up' : 'unknown'),
    () => 'unknown' as const,
  );
}

/**
 * Ends a lost dialog's far side with a BYE built from the dialog's identifiers (Call-ID, tags, the
 * remote target), sent as a new request on the current drachtio-server connection. Never throws:
 * resolves with what happened ('answered 200', 'answered 481', 'unanswered', 'not sent: ...').
 */
export async function byeOutsideDialog(srf: Srf, dialog: Srf.Dialog, timeoutMs: number): Promise<string> {
  const ids = probed.get(dialog) ?? dialogIds(dialog);
  // drachtio-srf would try the dead connection: drop its copy of the dialog without a word on the wire.
  dialog.removeAllListeners('destroy');
  try {
    dialog.destroy(undefined, () => undefined);
  } catch {
    // the dead connection throws: the dialog is removed from drachtio-srf's table either way
  }
  if (!ids) return 'not sent: the dialog has no identifiers';
  return byeInLostDialog(srf, ids, timeoutMs).then(
    (status) => `answered ${status}`,
    (err: unknown) => (err instanceof TimeoutError ? 'unanswered' : `not sent: ${(err as Error).message}`),
  );
}

import Srf from 'drachtio-srf';
import { Logger } from '../log';
import { TimeoutError } from './dialog-requests';
import { byeInLostDialog, DialogIds, dialogIds, requestInLostDialog } from './out-of-dialog';

/** The first OPTIONS CSeq in a lost dialog: above any the dialog can have used (RFC 3261 12.2.2), below the BYE's. */
const FIRST_PROBE_CSEQ = 1900000000;

/** What the probe keeps of a dialog it has asked about: its identifiers and the last OPTIONS CSeq sent in it. */
interface Probed { ids: DialogIds; cseq: number }

/**
 * Finds out about, and ends, PBX dialogs that drachtio-server no longer holds (it restarted, the
 * connection to it dropped, or it dropped the dialog on a BYE the bridge refused). One per bridge, on
 * that bridge's Srf: what it remembers of each dialog (identifiers, OPTIONS CSeqs) is its own.
 */
export class LostDialogProbe {
  /** Dialogs asked about so far (forgotten with the dialog). */
  private readonly probed = new WeakMap<Srf.Dialog, Probed>();

  /** `canSend`: whether the Srf has a drachtio-server connection to send on now (SipCore.ready). */
  constructor(private readonly srf: Srf, private readonly canSend: () => boolean, private readonly log: Logger) {}

  /**
   * Whether drachtio-server can no longer send in this dialog: the connection the dialog was made on
   * is gone (drachtio-server restarted, or the bridge lost it and reconnected since). drachtio-srf
   * would send its BYE on that dead connection, and a restarted drachtio-server knows no dialogs.
   */
  lost(dialog: Srf.Dialog): boolean {
    const socket = (dialog as unknown as { socket?: { destroyed?: boolean } }).socket;
    return socket?.destroyed === true;
  }

  /**
   * Asks the PBX whether a lost dialog is still up: drachtio-server answers the PBX's BYE in a dialog it
   * does not know with 481 and tells nobody, so the bridge asks instead, with an OPTIONS carrying the
   * dialog's identifiers (RFC 3261 12.2.1: a PBX answers 481 for a dialog it has ended), each one with
   * a higher CSeq. 'gone' only on that 481; any other answer or none is not proof of anything, and
   * nothing is asked while drachtio-server is away (the next round asks).
   */
  async stillUp(dialog: Srf.Dialog, timeoutMs: number): Promise<'up' | 'gone' | 'unknown'> {
    if (!this.canSend()) return 'unknown';
    let p = this.probed.get(dialog);
    if (!p) {
      const ids = dialogIds(dialog);
      if (!ids) return 'unknown';
      this.probed.set(dialog, (p = { ids, cseq: FIRST_PROBE_CSEQ - 1 }));
    }
    return requestInLostDialog(this.srf, p.ids, 'OPTIONS', ++p.cseq, timeoutMs).then(
      (status) => (status === 481 ? 'gone' : status < 300 ? 'up' : 'unknown'),
      (err: unknown) => {
        if (!(err instanceof TimeoutError)) this.log.warn({ err, sipCallId: p.ids.callId }, 'could not ask the PBX whether a lost dialog is still up');
        return 'unknown' as const;
      },
    );
  }

  /**
   * Ends a lost dialog's far side with a BYE built from the dialog's identifiers (Call-ID, tags, the
   * remote target, the route set), sent as a new request on the current drachtio-server connection.
   * Never throws: resolves with what happened ('answered 200', 'answered 481', 'unanswered', 'not sent: ...').
   */
  async bye(dialog: Srf.Dialog, timeoutMs: number): Promise<string> {
    const ids = this.probed.get(dialog)?.ids ?? dialogIds(dialog);
    this.probed.delete(dialog);
    // drachtio-srf would try the dead connection: drop its copy of the dialog without a word on the wire.
    dialog.removeAllListeners('destroy');
    try {
      dialog.destroy(undefined, () => undefined);
    } catch {
      // the dead connection throws: the dialog is removed from drachtio-srf's table either way
    }
    if (!ids) return 'not sent: the dialog has no identifiers';
    if (!this.canSend()) return 'not sent: drachtio-server unreachable';
    return byeInLostDialog(this.srf, ids, timeoutMs).then(
      (status) => `answered ${status}`,
      (err: unknown) => (err instanceof TimeoutError ? 'unanswered' : `not sent: ${(err as Error).message}`),
    );
  }
}

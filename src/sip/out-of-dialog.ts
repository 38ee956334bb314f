import Srf from 'drachtio-srf';
import { withTimeout } from './dialog-requests';

/** A dialog's identifiers: enough to send a request in it without drachtio-srf's copy of the dialog. */
export interface DialogIds { callId: string; uri: string; from: string; to: string }

interface DialogInternals {
  type?: string;
  req: { uri: string; getParsedHeader(name: string): { uri?: string } | undefined };
  sip: { callId: string; localTag: string; remoteTag: string };
  remote: { uri: string };
}

/** What a request in this dialog needs, from either side of it (the bridge as UAC or as UAS). */
export function dialogIds(dialog: Srf.Dialog): DialogIds | null {
  const d = dialog as unknown as DialogInternals;
  try {
    const from = d.req.getParsedHeader('From')?.uri;
    const to = d.req.getParsedHeader('To')?.uri ?? d.req.uri;
    const [local, remote] = d.type === 'uas' ? [to, from] : [from, to];
    if (!local || !remote || !d.sip.callId) return null;
    return {
      callId: d.sip.callId,
      uri: d.remote.uri,
      from: `<${local}>;tag=${d.sip.localTag}`,
      to: `<${remote}>;tag=${d.sip.remoteTag}`,
    };
  } catch {
    return null;
  }
}

/** drachtio-srf's request() as it behaves (its bundled typings do not match it). */
interface OutOfDialogRequester {
  request(uri: string, opts: { method: string; headers: Record<string, string> },
    cb: (err: Error | null, req?: { on(ev: 'response', f: (res: { status: number }) => void): void }) => void): void;
}

/** A BYE's CSeq above any the dialog can have used, so the PBX takes it (RFC 3261 12.2.2). */
const LOST_DIALOG_BYE_CSEQ = 2000000000;

/** Ends a dialog drachtio-server does not hold with a BYE; resolves with the PBX's final status. */
export function byeInLostDialog(srf: Srf, ids: DialogIds, timeoutMs: number, headers: Record<string, string> = {}): Promise<number> {
  return requestInLostDialog(srf, ids, 'BYE', LOST_DIALOG_BYE_CSEQ, timeoutMs, headers);
}

/**
 * Sends `method` in a dialog drachtio-server does not hold (it restarted, or the node that made the
 * dialog is gone), as a new request carrying the dialog's Call-ID, tags and remote target, with a CSeq
 * above any the dialog can have used (RFC 3261 12.2.2). Resolves with the final status; rejects when
 * it cannot be sent or gets no answer within `timeoutMs` (`TimeoutError`).
 */
export function requestInLostDialog(srf: Srf, ids: DialogIds, method: 'BYE' | 'OPTIONS', cseq: number, timeoutMs: number, headers: Record<string, string> = {}): Promise<number> {
  const sent = new Promise<number>((resolve, reject) => {
    try {
      (srf as unknown as OutOfDialogRequester).request(ids.uri, {
        method,
        headers: { 'Call-ID': ids.callId, From: ids.from, To: ids.to, CSeq: `${cseq} ${method}`, ...headers },
      }, (err, req) => {
        if (err || !req) return reject(err ?? new Error(`${method} not sent`));
        req.on('response', (res) => resolve(res.status));
      });
    } catch (err) {
      reject(err as Error);
    }
  });
  return withTimeout(sent, timeoutMs, 'unanswered');
}

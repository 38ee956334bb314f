import net from 'node:net';
import Srf from 'drachtio-srf';
import { plainAddress } from '../util/addresses';
import { SourceAllowList } from './trust';

/** A request in a dialog that came from neither the dialog's peer nor a trusted source. */
export interface RefusedInDialog { method: string; source: string; peer: string | null }

/** What drachtio-srf's Dialog does with each request in it (not in its typings). */
type DialogHandler = (req: Srf.SrfRequest, res: Srf.SrfResponse, next?: unknown) => void;

/**
 * Who may act inside an established dialog. drachtio-server hands the bridge every request that names
 * a dialog's Call-ID and tags, whoever sent it, and anyone who sees the plain SIP knows them: a BYE,
 * re-INVITE or REFER from such an outsider would end the call, move its media or start a transfer.
 * So a request is taken only from the address the dialog was set up with (the PBX that sent the
 * INVITE, or the one that answered ours) or a trusted source (SIP_TRUSTED_SOURCES, PBX_TARGET's
 * addresses); anything else is answered 403 (an ACK is dropped) and changes nothing.
 */
export class InDialogGuard {
  private readonly trusted: SourceAllowList;

  /** `trusted`: addresses or CIDRs that may act in any dialog; `refused`: told of each refusal. */
  constructor(trusted: string[], private readonly refused: (r: RefusedInDialog) => void = () => undefined) {
    this.trusted = new SourceAllowList(trusted.filter((t) => net.isIP(t.split('/')[0] ?? '') !== 0));
  }

  /** Whether a request from `source` may act in a dialog whose peer is `peer`. */
  allows(source: string, peer: string | null): boolean {
    const s = comparable(source);
    return (peer !== null && s === comparable(peer)) || this.trusted.allows(s);
  }

  /**
   * Puts the check in front of everything the dialog does with a request (before drachtio-srf answers
   * a BYE itself). `onRefused`: also told of each refusal in this dialog (the call's timeline). Once
   * per dialog: a second call changes nothing.
   */
  protect(dialog: Srf.Dialog, onRefused?: (r: RefusedInDialog) => void): void {
    const d = dialog as unknown as { handle: DialogHandler; __wasbGuarded?: true };
    if (d.__wasbGuarded) return;
    d.__wasbGuarded = true;
    const peer = peerAddress(dialog);
    const handle = d.handle.bind(dialog);
    d.handle = (req, res, next) => {
      // drachtio-server's own requests (a session timer's BYE) carry no network source.
      if (req.source !== 'network' || this.allows(req.source_address, peer)) return handle(req, res, next);
      const r = { method: String(req.method), source: req.source_address, peer };
      if (req.method !== 'ACK') {
        res.send(403, 'Forbidden', { headers: { Warning: '399 wa-sip-bridge "not a party to this dialog"' } });
      }
      this.refused(r);
      onRefused?.(r);
    };
  }
}

/**
 * The address a dialog was set up with: where the PBX's INVITE came from (the bridge answered it), or
 * where the 200 OK to the bridge's INVITE came from. Null when drachtio-srf kept neither.
 */
export function peerAddress(dialog: Srf.Dialog): string | null {
  const d = dialog as unknown as { type: string; req?: { source_address?: string }; res?: { source_address?: string } };
  const a = d.type === 'uas' ? d.req?.source_address : d.res?.source_address;
  return a ? comparable(a) : null;
}

/** An address as compared: lower case, no brackets, an IPv4-mapped IPv6 address as IPv4. */
function comparable(a: string): string {
  return plainAddress(a.trim().replace(/^\[|\]$/g, '').toLowerCase());
}

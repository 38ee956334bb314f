import Srf from 'drachtio-srf';
import { CdrStore, OpenCall } from '../cdr/store';
import { Logger } from '../log';
import { parseHostPort } from '../config';
import { RtpEngine } from '../media/rtpengine';
import { WhatsAppProvider } from '../calls/provider-port';
import { byeInLostDialog, DialogIds } from '../sip/out-of-dialog';
import { parseRecovery } from '../calls/recovery-info';

export interface RecoveryDeps {
  /** The CDR statements recovery makes. */
  cdr: Pick<CdrStore, 'openCalls' | 'closeOrphan' | 'addEvent'>;
  /** A provider account's adapter by name (a CDR's `provider`; null: the bridge's default account). */
  provider: (account: string | null) => WhatsAppProvider | null;
  rtp: RtpEngine;
  srf: Srf;
  /** False while drachtio-server is unreachable: the BYE is skipped (and said so in the timeline). */
  canSip: () => boolean;
  nodeId: string;
  /** Bound on each SIP request sent (rtpengine and YCloud have their own timeouts). */
  sipTimeoutMs: number;
  log: Logger;
}

/**
 * Ends calls a node left open when it died (or when this node itself was killed and restarted):
 * the WhatsApp leg at YCloud (reject before acceptance, terminate after), the PBX leg by a BYE in its
 * dialog, the media by rtpengine `delete`, and the CDR closed with the reason. Each action is bounded
 * and may fail on its own (a leg may be gone already); the CDR says what was done.
 */
export class OrphanRecovery {
  constructor(private readonly d: RecoveryDeps) {}

  /** Ends every open call of `nodeId`; returns how many were ended here. */
  async recoverNode(nodeId: string, reason: string): Promise<number> {
    const open = await this.d.cdr.openCalls(nodeId);
    if (open.length === 0) return 0;
    this.d.log.warn({ node: nodeId, calls: open.length, reason }, 'ending calls left open by a node that is gone');
    const results = await Promise.all(open.map((c) => this.endCall(c, reason).then(() => true, (err: unknown) => {
      this.d.log.error({ err, callId: c.id }, 'could not end an orphaned call');
      return false;
    })));
    return results.filter(Boolean).length;
  }

  private async endCall(c: OpenCall, reason: string): Promise<void> {
    const r = parseRecovery(c.recovery);
    const accepted = c.acceptedAt !== null;
    const done: Record<string, string> = {};
    const note = (what: string) => (p: Promise<unknown>) => p.then(() => { done[what] = 'ok'; }, (err: unknown) => { done[what] = (err as Error).message.slice(0, 200); });
    await Promise.all([
      c.wacid ? note('whatsapp')(this.endWhatsApp(c, accepted)) : Promise.resolve(),
      r.sip ? note('pbx')(this.bye(r.sip)) : Promise.resolve(),
      r.rtpengine ? note('rtpengine')(this.deleteMedia(r.rtpengine, c.id)) : Promise.resolve(),
    ]);
    await this.d.cdr.closeOrphan(c.id, accepted, reason);
    await this.d.cdr.addEvent(c.id, 'recovered', { reason, by: this.d.nodeId, actions: done });
    this.d.log.info({ callId: c.id, wacid: c.wacid, actions: done }, 'orphaned call ended');
  }

  private endWhatsApp(c: OpenCall, accepted: boolean): Promise<unknown> {
    const ref = { phoneId: c.phoneId ?? '', wacid: c.wacid! };
    const provider = this.d.provider(c.provider);
    if (!provider) return Promise.reject(new Error(`no provider account "${c.provider}" on this bridge to end the call with`));
    // An inbound call not yet accepted is rejected; anything else is terminated.
    return c.direction === 'inbound' && !accepted ? provider.reject(ref) : provider.terminate(ref);
  }

  private async bye(s: DialogIds): Promise<void> {
    if (!this.d.canSip()) throw new Error('drachtio-server unreachable: no BYE sent');
    const status = await byeInLostDialog(this.d.srf, s, this.d.sipTimeoutMs, { Reason: 'Q.850;cause=41;text="bridge node lost"' });
    // 481: the PBX had ended the dialog already.
    if (status >= 300 && status !== 481) throw new Error(`BYE answered ${status}`);
  }

  private deleteMedia(at: string, callId: string): Promise<unknown> {
    const ng = parseHostPort(at);
    if (!ng) return Promise.reject(new Error(`bad rtpengine address ${at}`));
    return this.d.rtp.delete(ng, { 'call-id': callId });
  }
}

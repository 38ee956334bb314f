import net from 'node:net';
import { Config } from '../config';
import { RefusalLog } from '../refusal-log';
import { InDialogGuard } from './dialog-guard';
import { SipCore } from './drachtio';
import { LostDialogProbe } from './lost-dialog';
import { targetHosts, TransferPolicy } from './transfer-policy';

/**
 * What every call's PBX session applies from the bridge's SIP side (one of each per bridge): who may act
 * in its dialogs, where a REFER may send the bridge's INVITE, and the probe for dialogs drachtio-server lost.
 */
export interface SipPolicy { dialogs: InDialogGuard; transfers: TransferPolicy; lostDialogs: LostDialogProbe }

/**
 * The bridge's SIP rules for calls in progress, from its settings: requests in a PBX dialog only from
 * the dialog's peer, SIP_TRUSTED_SOURCES or PBX_TARGET's addresses; REFER targets only on the
 * configured PBX or TRANSFER_TARGET_PATTERN, never the bridge's own ports. `httpPort`: read at each
 * check (the HTTP side starts after the SIP side). Refusals go to `refusals` (rate-limited).
 */
export function sipPolicyFor(config: Config, sip: SipCore, httpPort: () => number, refusals: RefusalLog): SipPolicy {
  const pbxHosts = targetHosts(config.pbx.targets);
  const dialogs = new InDialogGuard([...config.outbound.trustedSources, ...pbxHosts.filter((h) => net.isIP(h) !== 0)], (r) => {
    refusals.warn({ method: r.method, source: r.source, peer: r.peer }, 'SIP request in a call refused (403): the sender is not the call\'s PBX');
  });
  const transfers = new TransferPolicy({
    pbxHosts,
    trusted: config.outbound.trustedSources,
    pattern: config.pbx.transferTargetPattern,
    ownAddresses: () => [config.publicIp, config.drachtio.host, config.httpHost ?? '', ...sip.sipEndpoints.map((e) => e.address)].filter(Boolean),
    ownPorts: () => [
      config.drachtio.port,
      ...sip.sipEndpoints.map((e) => e.port),
      httpPort() || config.httpPort,
      ...config.rtpengine.ng.map((n) => n.port),
      ...(config.rtpengine.dtmfLog ? [config.rtpengine.dtmfLog.port] : []),
    ].filter((p) => p > 0),
  });
  return { dialogs, transfers, lostDialogs: sip.lostDialogs };
}

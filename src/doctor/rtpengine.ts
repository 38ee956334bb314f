import crypto from 'node:crypto';
import { Client, NgResponse } from 'rtpengine-client';
import { isNonPublicAddress } from '../config';
import { NgAddress, ngAddressText } from '../media/rtpengine';
import { mediaAddresses } from '../media/sdp';
import { CheckResult, failed, ok, warn } from '../preflight/report';
import { messageOf } from './check';

export interface RtpengineCheck {
  ng: NgAddress;
  /** RTPENGINE_WA_INTERFACE, RTPENGINE_PBX_INTERFACE. */
  interfaces: { whatsapp: string; pbx: string };
  publicIp: string;
  timeoutMs: number;
}

/**
 * One rtpengine as the bridge uses it: it answers an ng `ping`; and an offer through each of the bridge's
 * two logical interfaces (deleted at once: nothing is ever sent) shows that both exist, what address each
 * advertises (WhatsApp must be given PUBLIC_IP), and a port of its media range (for the firewall).
 */
export async function checkRtpengine(o: RtpengineCheck): Promise<CheckResult[]> {
  const at = ngAddressText(o.ng);
  const client = new Client({ timeout: o.timeoutMs, ...(o.ng.host === '127.0.0.1' || o.ng.host === 'localhost' ? { localAddress: '127.0.0.1' } : {}) });
  client.on('error', () => { /* each command's promise rejects */ });
  try {
    try {
      await client.ping(o.ng.port, o.ng.host);
    } catch (err) {
      return [failed('ng ping', `${at} does not answer (${messageOf(err)}): is rtpengine running with --listen-ng=${at} (RTPENGINE_NG)?`)];
    }
    const results: CheckResult[] = [ok('ng ping', `${at} answers`)];
    const toWa = await probe(client, o, [o.interfaces.pbx, o.interfaces.whatsapp]);
    const toPbx = await probe(client, o, [o.interfaces.whatsapp, o.interfaces.pbx]);
    results.push(waSide(o, toWa), pbxSide(o, toPbx));
    const ports = [toWa, toPbx].flatMap((p) => ('port' in p && p.port ? [p.port] : []));
    if (ports.length) {
      results.push(ok('media ports', `rtpengine gave port ${ports.join(' and ')}: its whole --port-min..--port-max range must be open for UDP `
        + '(from anywhere on the WhatsApp side: WhatsApp\'s media servers are not a fixed list)'));
    }
    return results;
  } finally {
    client.close();
  }
}

type Probe = { addresses: string[]; port: number | null } | { error: string };

/** An offer from one side to the other (`direction`), deleted at once: the SDP rtpengine would give the second side. */
async function probe(client: Client, o: RtpengineCheck, direction: [string, string]): Promise<Probe> {
  const callId = `doctor-${crypto.randomBytes(6).toString('hex')}`;
  const sdp = [
    'v=0', 'o=doctor 1 1 IN IP4 127.0.0.1', 's=doctor', 'c=IN IP4 127.0.0.1', 't=0 0',
    'm=audio 9 RTP/AVP 0 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', '',
  ].join('\r\n');
  let res: NgResponse;
  try {
    res = await client.offer(o.ng.port, o.ng.host, { 'call-id': callId, 'from-tag': 'doctor', sdp, direction, replace: ['origin', 'session-connection'] });
  } catch (err) {
    return { error: messageOf(err) };
  } finally {
    await client.delete(o.ng.port, o.ng.host, { 'call-id': callId, 'from-tag': 'doctor' }).catch(() => undefined);
  }
  if (res.result !== 'ok' || typeof res.sdp !== 'string') return { error: String(res['error-reason'] ?? res.result) };
  const port = /^m=audio (\d+)/m.exec(res.sdp);
  return { addresses: mediaAddresses(res.sdp), port: port ? Number(port[1]) : null };
}

function waSide(o: RtpengineCheck, p: Probe): CheckResult {
  const check = `interface ${o.interfaces.whatsapp}`;
  if ('error' in p) {
    return failed(check, `an offer toward WhatsApp through "${o.interfaces.whatsapp}" was refused (${p.error}): rtpengine needs `
      + `--interface=${o.interfaces.whatsapp}/LOCAL!${o.publicIp} (RTPENGINE_WA_INTERFACE)`);
  }
  const wrong = p.addresses.filter((a) => a !== o.publicIp.toLowerCase());
  if (wrong.length) {
    return failed(check, `WhatsApp would be given ${wrong.join(', ')}, not PUBLIC_IP ${o.publicIp}: calls connect with no audio. `
      + `Start rtpengine with --interface=${o.interfaces.whatsapp}/<this host's address>!${o.publicIp}`);
  }
  return ok(check, `WhatsApp is given ${o.publicIp} (PUBLIC_IP)`);
}

function pbxSide(o: RtpengineCheck, p: Probe): CheckResult {
  const check = `interface ${o.interfaces.pbx}`;
  if ('error' in p) {
    return failed(check, `an offer toward the PBX through "${o.interfaces.pbx}" was refused (${p.error}): rtpengine needs --interface=${o.interfaces.pbx}/<address the PBX reaches> (RTPENGINE_PBX_INTERFACE)`);
  }
  const shown = p.addresses.join(', ') || 'no address';
  if (p.addresses.some((a) => a === o.publicIp.toLowerCase() && !isNonPublicAddress(a))) {
    return warn(check, `the PBX would be given ${shown}, the public address: fine only if the PBX reaches this host there`);
  }
  return ok(check, `the PBX is given ${shown}`);
}

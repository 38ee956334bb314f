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
 * One rtpengine as the bridge uses it: it answers an ng `ping`; its logical interfaces (ng `statistics`)
 * include the bridge's two (an unknown name in an offer's `direction` is not refused: rtpengine falls back
 * to its default interface, and the call's media goes out the wrong side); an offer through each (deleted
 * at once: nothing is ever sent) shows what address each side is given (WhatsApp must get PUBLIC_IP); and
 * the media port range with what is free of it.
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
    const listed = await interfacesOf(client, o);
    const named = (name: string) => listed === null || listed.some((i) => i.name === name);
    const missing = [o.interfaces.whatsapp, o.interfaces.pbx].filter((n) => !named(n));
    if (listed === null) results.push(warn('interfaces', 'rtpengine does not list its interfaces (ng statistics): their names are unchecked'));
    else if (missing.length) {
      results.push(failed('interfaces', `rtpengine has no interface ${missing.map((n) => `"${n}"`).join(' or ')} (it has ${listed.map((i) => `${i.name}/${i.address}`).join(', ') || 'none'}): `
        + 'offers naming it silently use its default one. Start rtpengine with --interface=NAME/ADDRESS for each (RTPENGINE_WA_INTERFACE, RTPENGINE_PBX_INTERFACE)'));
    } else results.push(ok('interfaces', listed.map((i) => `${i.name}/${i.address}`).join(', ')));
    // An offer through a missing interface shows the default one's address: nothing to learn from it.
    if (named(o.interfaces.whatsapp)) results.push(waSide(o, await probe(client, o, [o.interfaces.pbx, o.interfaces.whatsapp])));
    if (named(o.interfaces.pbx)) results.push(pbxSide(o, await probe(client, o, [o.interfaces.whatsapp, o.interfaces.pbx])));
    if (listed?.length) results.push(portsLine(listed));
    return results;
  } finally {
    client.close();
  }
}

/** One logical interface as ng `statistics` lists it (rtpengine 10.5: name, local address, port range and use). */
interface ListedInterface { name: string; address: string; ports: { min: number; max: number; free: number; totals: number } | null }

async function interfacesOf(client: Client, o: RtpengineCheck): Promise<ListedInterface[] | null> {
  let res: NgResponse;
  try {
    res = await client.statistics(o.ng.port, o.ng.host, {});
  } catch {
    return null;
  }
  const list = (res.statistics as { interfaces?: unknown } | undefined)?.interfaces;
  if (!Array.isArray(list)) return null;
  return list.flatMap((i: unknown) => {
    const x = i as { name?: unknown; address?: unknown; ports?: Record<string, unknown> };
    if (typeof x.name !== 'string') return [];
    const p = x.ports;
    const ports = p && [p.min, p.max, p.free, p.totals].every((n) => typeof n === 'number')
      ? { min: p.min as number, max: p.max as number, free: p.free as number, totals: p.totals as number }
      : null;
    return [{ name: x.name, address: typeof x.address === 'string' ? x.address : '?', ports }];
  });
}

/** A bridged call holds about this many ports: RTP and RTCP on each of its two legs. */
const PORTS_PER_CALL = 4;

function portsLine(listed: ListedInterface[]): CheckResult {
  const ranges = [...new Map(listed.flatMap((i) => (i.ports ? [[`${i.ports.min}-${i.ports.max}`, i.ports] as const] : []))).entries()];
  if (ranges.length === 0) return warn('media ports', 'rtpengine does not say its port range');
  const free = Math.min(...ranges.map(([, p]) => p.free));
  const text = `UDP ${ranges.map(([r]) => r).join(', ')} (${free} free: room for about ${Math.floor(free / PORTS_PER_CALL)} more calls): `
    + 'open it in the firewall, from anywhere on the WhatsApp side (its media servers are no fixed list)';
  return free < PORTS_PER_CALL * 10 ? warn('media ports', text) : ok('media ports', text);
}

type Probe = { addresses: string[] } | { error: string };

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
  return { addresses: mediaAddresses(res.sdp) };
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

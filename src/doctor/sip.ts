import Srf from 'drachtio-srf';
import { createLogger } from '../log';
import { CheckResult, failed, ok, skipped, warn } from '../preflight/report';
import { PbxTargetMonitor } from '../sip/options';
import { srfCanSend, srfStop } from '../sip/srf-connection';
import { messageOf } from './check';

export interface SipCheck {
  drachtio: { host: string; port: number; secret: string };
  /** Each number's PBX targets, by number name (a target several numbers share is pinged once). */
  pbxTargets: Array<{ number: string; targets: string[] }>;
  /** META_SIP_LISTEN_PORT when a number is in Meta's SIP mode (drachtio-server must have a TLS contact there); null: none is. */
  metaSipPort: number | null;
  timeoutMs: number;
}

/** A contact from drachtio-server's hello ("udp/10.0.0.5:5060"; with an external address: ".../10.0.0.5:5060;..."). */
export interface SipContact { transport: string; address: string; port: number }

/**
 * drachtio-server as the bridge meets it (the admin connection with DRACHTIO_SECRET, the SIP contacts it
 * says it has), then each PBX target's answer to an OPTIONS sent through it, exactly as the bridge's
 * pings go (src/sip/options.ts). Two sections: drachtio-server's, and the PBX's.
 */
export async function checkSip(o: SipCheck): Promise<{ drachtio: CheckResult[]; pbx: CheckResult[] }> {
  const srf = new Srf();
  const at = `${o.drachtio.host}:${o.drachtio.port}`;
  try {
    const hello = await connect(srf, o);
    if ('error' in hello) {
      return {
        drachtio: [failed('connection', hello.error)],
        pbx: [skipped('OPTIONS', `not sent: they go out through drachtio-server, which is not connected (${at})`)],
      };
    }
    const contacts = parseContacts(hello.hostPort);
    const drachtio = [ok('connection', `connected to ${at} with DRACHTIO_SECRET${hello.version ? ` (drachtio-server ${hello.version})` : ''}`), contactsCheck(contacts, o)];
    return { drachtio, pbx: await pingTargets(srf, o) };
  } finally {
    srfStop(srf);
  }
}

/** drachtio-server's hello: its SIP contacts and its version. */
interface Hello { hostPort: string; version: string | null }

/** Connects once (no retries): drachtio-server's hello, or why it did not come. */
function connect(srf: Srf, o: SipCheck): Promise<Hello | { error: string }> {
  const at = `${o.drachtio.host}:${o.drachtio.port}`;
  return new Promise((resolve) => {
    const done = (r: Hello | { error: string }) => {
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: `no answer from ${at} within ${o.timeoutMs} ms (DRACHTIO_HOST, DRACHTIO_PORT: its admin port, 9022 by default)` }), o.timeoutMs);
    srf.on('connect', (err: Error | null, hostPort: string, version?: string | null) => {
      if (!err && srfCanSend(srf)) return done({ hostPort: String(hostPort ?? ''), version: version ?? null });
      done({
        error: err && /authenticate/i.test(err.message)
          ? `drachtio-server at ${at} refused DRACHTIO_SECRET: it differs from the <secret> in drachtio-server's configuration`
          : `drachtio-server at ${at} did not accept the connection (${err ? err.message : 'closed at once'})`,
      });
    });
    srf.on('error', (err: Error) => {
      const code = (err as { code?: string }).code;
      done({
        error: code === 'ECONNREFUSED'
          ? `nothing listens at ${at}: is drachtio-server running, with its admin port there (DRACHTIO_HOST, DRACHTIO_PORT)?`
          : `cannot reach drachtio-server at ${at}: ${messageOf(err)}`,
      });
    });
    srf.connect({ host: o.drachtio.host, port: o.drachtio.port, secret: o.drachtio.secret } as Parameters<Srf['connect']>[0]);
  });
}

/** drachtio-server's hello, contact by contact ("udp/127.0.0.1:5060,tcp/[::1]:5060,tls/10.0.0.5:5061"). */
export function parseContacts(hostPort: string): SipContact[] {
  return hostPort.split(',').flatMap((part) => {
    const m = /^\s*([a-z]+)\/\[?([0-9A-Fa-f:.]+?)\]?:(\d{1,5})/.exec(part);
    return m ? [{ transport: m[1]!.toLowerCase(), address: m[2]!.toLowerCase(), port: Number(m[3]) }] : [];
  });
}

function contactsCheck(contacts: SipContact[], o: SipCheck): CheckResult {
  const check = 'SIP contacts';
  const list = contacts.map((c) => `${c.transport}/${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}`).join(', ');
  if (contacts.length === 0) return failed(check, 'drachtio-server names no SIP contact: give it a <contact> (sip-contacts) the PBX reaches');
  if (o.metaSipPort !== null && !contacts.some((c) => c.transport === 'tls' && c.port === o.metaSipPort)) {
    return failed(check, `${list}: no TLS contact on META_SIP_LISTEN_PORT ${o.metaSipPort}, where Meta sends the SIP-mode numbers' INVITEs`);
  }
  const loopbackOnly = contacts.every((c) => isLoopback(c.address));
  const remotePbx = o.pbxTargets.some((p) => p.targets.some((t) => !isLoopback(hostOf(t))));
  if (loopbackOnly && remotePbx) return warn(check, `${list}: loopback only, and a PBX target is elsewhere: the PBX cannot send its INVITEs (agents' calls) here`);
  return ok(check, list);
}

/** One OPTIONS round over every target, with the bridge's own monitor; a target down is a FAIL when a number has no other that answers. */
async function pingTargets(srf: Srf, o: SipCheck): Promise<CheckResult[]> {
  const all = [...new Set(o.pbxTargets.flatMap((p) => p.targets))];
  if (all.length === 0) return [skipped('OPTIONS', 'no PBX target is configured (PBX_TARGET, or the numbers\' pbx.targets)')];
  const monitor = new PbxTargetMonitor(srf, all, { intervalMs: 0, timeoutMs: o.timeoutMs, canPing: () => true }, createLogger('silent'), { sipRequest: () => undefined });
  await monitor.pingAll();
  const health = monitor.status();
  return all.map((t) => {
    const users = o.pbxTargets.filter((p) => p.targets.includes(t));
    if (health[t] === 'up') return ok(t, `answers OPTIONS${users.length ? ` (${users.map((u) => u.number).join(', ')})` : ''}`);
    const stranded = users.filter((u) => !u.targets.some((x) => x !== t && health[x] === 'up')).map((u) => u.number);
    const why = `no SIP answer to OPTIONS within ${o.timeoutMs} ms (or unreachable): is the PBX up, and does its firewall let this host's SIP in?`;
    return stranded.length
      ? failed(t, `${why} Calls to ${stranded.join(', ')} have no PBX that answers`)
      : warn(t, `${why} Another target of its numbers answers (failover)`);
  });
}

function hostOf(uri: string): string {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(uri);
  return m ? m[1]!.replace(/^\[|\]$/g, '').toLowerCase() : '';
}

function isLoopback(address: string): boolean {
  return address === '::1' || address === 'localhost' || address.startsWith('127.');
}

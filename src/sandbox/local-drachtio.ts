import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findProgram, freePort, ManagedProcess } from './processes';

/** Where the drachtio binary is: $DRACHTIO_BIN, or `drachtio` on PATH; null when absent. */
export function findDrachtio(): string | null {
  return findProgram('drachtio', 'DRACHTIO_BIN');
}

export interface DrachtioServer { adminPort: number; sipHost: string; sipPort: number; tlsPort: number | null; secret: string; proc: ManagedProcess; dir: string }

export interface DrachtioOptions {
  /** SIP over TLS besides UDP: a contact (on `tlsPort`, default a free port) with this key and certificate (PEM files). */
  tls?: { keyFile: string; certFile: string };
  tlsPort?: number;
  /** The UDP contact's --external-ip and --local-net, as compose sets them with SIP_EXTERNAL_IP. */
  nat?: { externalIp: string; localNet: string };
  /** The SIP contact's address and port (default 127.0.0.1 and a free port). */
  sipHost?: string;
  sipPort?: number;
  /** The admin port's secret (default: a fixed test value; the sandbox makes a random one). */
  secret?: string;
}

/**
 * A private drachtio-server, with a generated config: the admin port on loopback, one UDP SIP contact
 * (loopback unless `sipHost`), the log on the console. Tests and the sandbox start theirs with this.
 */
export async function startDrachtio(bin: string, o: DrachtioOptions = {}): Promise<DrachtioServer> {
  const adminPort = await freePort('tcp');
  const sipHost = o.sipHost ?? '127.0.0.1';
  const sipPort = o.sipPort ?? await freePort('udp');
  const tlsPort = o.tls ? o.tlsPort ?? await freePort('tcp') : null;
  const tls = o.tls
    ? `      <contact>sips:127.0.0.1:${tlsPort};transport=tls</contact>
    </contacts>
    <tls>
      <key-file>${o.tls.keyFile}</key-file>
      <cert-file>${o.tls.certFile}</cert-file>
      <chain-file>${o.tls.certFile}</chain-file>
    </tls>`
    : '    </contacts>';
  const secret = o.secret ?? 'test-secret';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-drachtio-'));
  const conf = path.join(dir, 'drachtio.conf.xml');
  fs.writeFileSync(conf, `<drachtio>
  <admin port="${adminPort}" secret="${secret}">127.0.0.1</admin>
  <sip>
    <contacts>
      <contact${o.nat ? ` external-ip="${o.nat.externalIp}" local-net="${o.nat.localNet}"` : ''}>sip:${sipHost}:${sipPort};transport=udp</contact>
${tls}
  </sip>
  <logging>
    <console/>
    <loglevel>info</loglevel>
    <sofia-loglevel>3</sofia-loglevel>
  </logging>
</drachtio>
`);
  const proc = new ManagedProcess('drachtio', bin, ['-f', conf]);
  await proc.waitFor(/Starting sofia event loop/, 15000).catch(async (err: Error) => {
    await proc.stop();
    throw err;
  });
  return { adminPort, sipHost, sipPort, tlsPort, secret, proc, dir };
}


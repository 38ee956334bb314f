import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findProgram, freePort, ManagedProcess } from './processes';

/** Where the drachtio binary is: $DRACHTIO_BIN, or `drachtio` on PATH; null when absent. */
export function findDrachtio(): string | null {
  return findProgram('drachtio', 'DRACHTIO_BIN');
}

export interface DrachtioServer { adminPort: number; sipPort: number; secret: string; proc: ManagedProcess; dir: string }

/** A private drachtio-server on loopback, with a generated config (admin port, SIP contact, console log). */
export async function startDrachtio(bin: string): Promise<DrachtioServer> {
  const adminPort = await freePort('tcp');
  const sipPort = await freePort('udp');
  const secret = 'test-secret';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-drachtio-'));
  const conf = path.join(dir, 'drachtio.conf.xml');
  fs.writeFileSync(conf, `<drachtio>
  <admin port="${adminPort}" secret="${secret}">127.0.0.1</admin>
  <sip>
    <contacts>
      <contact>sip:127.0.0.1:${sipPort};transport=udp</contact>
    </contacts>
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
  return { adminPort, sipPort, secret, proc, dir };
}

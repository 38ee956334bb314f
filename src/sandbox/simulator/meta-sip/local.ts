import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DrachtioServer, findDrachtio, startDrachtio } from '../../local-drachtio';
import { RtpengineInstance, startRtpengine } from '../../local-rtpengine';
import { META_REALM } from './digest';
import { MetaSipSim } from './sim';
import type { MetaSipSimOptions } from './types';

const run = promisify(execFile);

/** What `startMetaSipSim` needs: MetaSipSimOptions without the parts it starts itself. */
export interface StartMetaSipSimOptions extends Omit<MetaSipSimOptions, 'drachtio' | 'rtpengine'> {
  /** drachtio-server binary (default: $DRACHTIO_BIN or `drachtio` on PATH). */
  drachtioBin?: string;
  /** Meta's media address: the sim's rtpengine interface (default 127.0.0.5, a loopback address of its own). */
  mediaAddress?: string;
  /** The sim's rtpengine port range (default 38000-38399). */
  portMin?: number;
  portMax?: number;
  /** The sim's own TLS certificate and key (default: a self-signed one for wa.meta.vc, made with openssl). */
  tls?: { keyFile: string; certFile: string };
}

export interface LocalMetaSipSim {
  sim: MetaSipSim;
  drachtio: DrachtioServer;
  rtpengine: RtpengineInstance;
  /** Where the bridge sends its INVITEs to Meta: the sim's SIP-over-TLS contact. */
  tlsContact: { host: string; port: number };
  /** The sim's certificate (PEM file): what the bridge would trust for wa.meta.vc. */
  certFile: string;
  /** Stops the sim, its drachtio-server and rtpengine, and removes generated files. */
  stop(): Promise<void>;
}

/**
 * Meta's SIP gateway for the sandbox (`--provider meta-sip`) and tests: starts the sim's own
 * drachtio-server (TLS contact) and rtpengine, then the sim itself. Everything started is stopped
 * again if a later step fails.
 */
export async function startMetaSipSim(o: StartMetaSipSimOptions): Promise<LocalMetaSipSim> {
  const bin = o.drachtioBin ?? findDrachtio();
  if (!bin) throw new Error('meta-sip sim: drachtio-server not found (set DRACHTIO_BIN or put `drachtio` on PATH)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-meta-sip-'));
  let drachtio: DrachtioServer | null = null;
  let rtpengine: RtpengineInstance | null = null;
  let sim: MetaSipSim | null = null;
  const cleanUp = async () => {
    await sim?.stop().catch(() => undefined);
    await drachtio?.proc.stop();
    await rtpengine?.proc.stop();
    if (drachtio) fs.rmSync(drachtio.dir, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const tls = o.tls ?? await selfSignedMetaCert(dir);
    drachtio = await startDrachtio(bin, { tls, secret: `meta-sip-${process.pid}-${Date.now().toString(36)}` });
    rtpengine = await startRtpengine({ portMin: o.portMin ?? 38000, portMax: o.portMax ?? 38399, interfaces: [o.mediaAddress ?? '127.0.0.5'] });
    sim = new MetaSipSim({
      ...o,
      drachtio: { host: '127.0.0.1', port: drachtio.adminPort, secret: drachtio.secret },
      rtpengine: { address: rtpengine.ng.host, port: rtpengine.ng.port },
    });
    await sim.start();
    const contact = { host: '127.0.0.1', port: drachtio.tlsPort! };
    return { sim, drachtio, rtpengine, tlsContact: contact, certFile: tls.certFile, stop: cleanUp };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/** A self-signed certificate for wa.meta.vc (the name Meta's own certificate carries). */
async function selfSignedMetaCert(dir: string): Promise<{ keyFile: string; certFile: string }> {
  const keyFile = path.join(dir, 'meta-key.pem');
  const certFile = path.join(dir, 'meta-cert.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${META_REALM}`,
    '-addext', `subjectAltName=DNS:${META_REALM}`, '-keyout', keyFile, '-out', certFile], { timeout: 20000 });
  return { keyFile, certFile };
}

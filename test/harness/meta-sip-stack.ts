import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bridge } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { LocalMetaSipSim, MetaSipNumber, MetaSrtp, startMetaSipSim } from '../../src/sandbox/simulator/meta-sip';
import { infraEnv, startSim } from './bridge';
import { DrachtioServer, findDrachtio, startDrachtio } from './drachtio';
import { issueCert, IssuedCert, makeTestCa, TestCa } from './test-ca';
import { DEFAULT_LINE, ProviderSim } from './ycloud-sim';
import { watch } from './watch';

/** The hostname the bridge's SIP-mode numbers give Meta (its TLS certificate's name in the tests). */
export const BRIDGE_HOSTNAME = 'sip.bridge.test';

/**
 * The numbers of a Meta SIP stack: two in SIP mode (DTLS, and SDES with Meta's G.711 option) and one
 * on Meta's Graph API, all on one Meta account. The DTLS one is the simulator's default line, the
 * number SIPp's agent scenarios call from.
 */
export const SIP_DTLS = { name: 'sip-dtls', number: DEFAULT_LINE.number, phoneId: DEFAULT_LINE.phoneId, password: 'dtls-sip-password' } as const;
export const SIP_SDES = { name: 'sip-sdes', number: '+6283138205161', phoneId: '461269257068832', password: 'sdes-sip-password' } as const;
export const GRAPH = { name: 'graph', number: '+6283138205162', phoneId: '461269257068833', wabaId: DEFAULT_LINE.wabaId } as const;

/** A SIP number's SRTP keying and G.711 option, set alike on Meta's side and in the bridge's NUMBERS_FILE. */
export interface SipNumberMedia { srtp: MetaSrtp; g711: boolean }

/** Which certificate the bridge's TLS listener presents: Meta refuses all but `valid`. */
export type BridgeCert = 'valid' | 'expired' | 'other-name';

export interface MetaSipStack {
  bridge: Bridge;
  /** Meta's SIP gateway (the sim, its drachtio-server and rtpengine). */
  meta: LocalMetaSipSim;
  /** Meta's Graph API (permissions, settings, the Graph number's calls and webhooks). */
  graph: ProviderSim;
  /** The bridge's own drachtio-server: UDP for the PBX, a TLS contact for Meta. */
  sip: DrachtioServer;
  ca: TestCa;
  /** The certificate the listener presents. */
  cert: IssuedCert;
  /** The bridge's settings (as an environment: what a command run beside it needs). */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * A bridge with numbers in Meta's SIP mode, end to end over real SIP and TLS: its own drachtio-server
 * with a TLS listener presenting `cert` (signed by a test CA the simulator trusts, as Meta trusts
 * public CAs), the Meta SIP simulator (its own drachtio-server and rtpengine on 127.0.0.5), and the
 * Graph simulator. `pbx`: each number's PBX target. `media`: overrides the two SIP numbers' SRTP keying
 * and G.711 option (by default SIP_DTLS is DTLS without G.711, SIP_SDES is SDES with it), e.g. for a
 * benchmark comparing G.711 pass-through with opus transcoding under one SRTP mode.
 */
export async function startMetaSipStack(o: {
  pbx: { dtls: string; sdes: string; graph: string }; env?: Record<string, string>; cert?: BridgeCert;
  media?: Partial<Record<'dtls' | 'sdes', SipNumberMedia>>;
}): Promise<MetaSipStack> {
  const dtls: SipNumberMedia = o.media?.dtls ?? { srtp: 'dtls', g711: false };
  const sdes: SipNumberMedia = o.media?.sdes ?? { srtp: 'sdes', g711: true };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-meta-sip-stack-'));
  const ca = makeTestCa(dir);
  const names = o.cert === 'other-name' ? ['sip.elsewhere.test'] : [BRIDGE_HOSTNAME];
  const cert = issueCert(ca, 'bridge', names, { expired: o.cert === 'expired' });
  const parts: Array<() => Promise<unknown>> = [async () => fs.rmSync(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const p of parts.splice(0).reverse()) await p().catch(() => undefined);
  };
  try {
    const sip = await startDrachtio(findDrachtio()!, { tls: cert });
    parts.push(() => sip.proc.stop());
    const numbers: MetaSipNumber[] = [
      { number: SIP_DTLS.number, phoneId: SIP_DTLS.phoneId, hostname: BRIDGE_HOSTNAME, password: SIP_DTLS.password, ...dtls },
      { number: SIP_SDES.number, phoneId: SIP_SDES.phoneId, hostname: BRIDGE_HOSTNAME, password: SIP_SDES.password, ...sdes },
    ];
    const meta = await startMetaSipSim({ bridge: { host: '127.0.0.1', port: sip.tlsPort! }, ca: ca.caFile, numbers, timeoutMs: 5000 });
    parts.push(() => meta.stop());
    const graph = await startSim({ provider: 'meta', apiKey: 'sip-stack-token', webhookSecret: 'sip-stack-app-secret' });
    parts.push(() => graph.stop());
    graph.addLine({ phoneId: SIP_SDES.phoneId, number: SIP_SDES.number, wabaId: DEFAULT_LINE.wabaId });
    graph.addLine({ phoneId: GRAPH.phoneId, number: GRAPH.number, wabaId: GRAPH.wabaId });
    const env = {
      META_SIP_STACK_TOKEN: 'sip-stack-token', META_SIP_STACK_SECRET: 'sip-stack-app-secret', META_SIP_STACK_VERIFY: 'sip-stack-verify',
      META_SIP_STACK_DTLS: SIP_DTLS.password, META_SIP_STACK_SDES: SIP_SDES.password,
    };
    const file = path.join(dir, 'numbers.yaml');
    fs.writeFileSync(file, [
      'providers:',
      '  meta:',
      '    kind: meta',
      `    apiBaseUrl: ${graph.baseUrl}`,
      '    accessToken: { env: META_SIP_STACK_TOKEN }',
      '    appSecret: { env: META_SIP_STACK_SECRET }',
      '    verifyToken: { env: META_SIP_STACK_VERIFY }',
      'numbers:',
      `  - { name: ${SIP_DTLS.name}, number: "${SIP_DTLS.number}", phoneId: "${SIP_DTLS.phoneId}", provider: meta, agentDefault: true,`,
      `      pbx: { targets: ["${o.pbx.dtls}"] }, sip: { hostname: ${BRIDGE_HOSTNAME}, password: { env: META_SIP_STACK_DTLS }, srtp: ${dtls.srtp}, g711: ${dtls.g711} } }`,
      `  - { name: ${SIP_SDES.name}, number: "${SIP_SDES.number}", phoneId: "${SIP_SDES.phoneId}", provider: meta,`,
      `      pbx: { targets: ["${o.pbx.sdes}"] }, sip: { hostname: ${BRIDGE_HOSTNAME}, password: { env: META_SIP_STACK_SDES }, srtp: ${sdes.srtp}, g711: ${sdes.g711} } }`,
      `  - { name: ${GRAPH.name}, number: "${GRAPH.number}", phoneId: "${GRAPH.phoneId}", provider: meta, pbx: { targets: ["${o.pbx.graph}"] } }`,
      '',
    ].join('\n'));
    Object.assign(process.env, env);
    parts.push(async () => {
      for (const k of Object.keys(env)) delete process.env[k];
    });
    const bridgeEnv: Record<string, string> = {
      ...infraEnv(), ...env,
      DRACHTIO_PORT: String(sip.adminPort), DRACHTIO_SECRET: sip.secret,
      NUMBERS_FILE: file,
      SIP_TRUSTED_SOURCES: '127.0.0.0/8',
      META_SIP_LISTEN_PORT: String(sip.tlsPort),
      META_SIP_PROXY: `sip:${meta.tlsContact.host}:${meta.tlsContact.port};transport=tls`,
      ...o.env,
    };
    const config = loadConfig(bridgeEnv);
    const bridge = new Bridge(config, createLogger(config.logLevel));
    watch(bridge);
    await bridge.start({ sipWaitMs: 5000 });
    parts.push(() => bridge.stop());
    graph.webhookUrl = `http://127.0.0.1:${bridge.httpPort}/webhooks/meta`;
    return { bridge, meta, graph, sip, ca, cert, env: bridgeEnv, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

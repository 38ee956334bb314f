import crypto from 'node:crypto';
import net from 'node:net';
import { Bridge } from '../app';
import { loadConfig } from '../config';
import { Logger } from '../log';
import { DemoAgent } from './demo-agent';
import { PhoneServer } from './phone-server';
import { SandboxTls } from './sandbox-ca';
import { LocalMetaSipSim, startMetaSipSim } from './simulator/meta-sip';
import { ProviderSim } from './ycloud-simulator';

type Env = Record<string, string | undefined>;

/** What the simulator's API keys look like: a key without this prefix is taken for a real one. */
export const SANDBOX_KEY_PREFIX = 'sandbox-';

/**
 * Why these settings must not run the sandbox, or none. The simulator stands in for YCloud: a real API
 * key (or YCloud's address) next to it means a production .env was loaded by mistake, and the sandbox's
 * calls, permission requests and settings changes are not to be mixed with a real account's.
 */
export function sandboxEnvProblems(env: Env): string[] {
  const problems: string[] = [];
  const key = env.YCLOUD_API_KEY?.trim();
  if (key && !key.startsWith(SANDBOX_KEY_PREFIX)) {
    problems.push('YCLOUD_API_KEY holds a YCloud API key: the sandbox runs its own simulated YCloud and refuses to start beside a real key (unset it, or run `npm start` for the real bridge)');
  }
  if (env.YCLOUD_API_BASE_URL?.trim()) {
    problems.push('YCLOUD_API_BASE_URL is set: in the sandbox the bridge talks only to the built-in YCloud simulator (unset it)');
  }
  const token = env.META_ACCESS_TOKEN?.trim();
  if (token && !token.startsWith(SANDBOX_KEY_PREFIX)) {
    problems.push('META_ACCESS_TOKEN holds a Meta access token: the sandbox runs its own simulated Meta Graph API and refuses to start beside a real token (unset it)');
  }
  if (env.META_API_BASE_URL?.trim()) {
    problems.push('META_API_BASE_URL is set: in the sandbox the bridge talks only to the built-in Meta simulator (unset it)');
  }
  const provider = env.WA_PROVIDER?.trim();
  if (provider && !(SANDBOX_PROVIDERS as readonly string[]).includes(provider)) problems.push(`WA_PROVIDER (--provider) must be ycloud, meta or meta-sip, not ${JSON.stringify(provider)}`);
  const host = env.SANDBOX_HOST?.trim();
  if (host && (!net.isIP(host) || host === '0.0.0.0' || host === '::')) {
    problems.push(`SANDBOX_HOST (--listen) must be one of this machine's IP addresses, where the page and its media are reached (not a name, not ${host === '0.0.0.0' || host === '::' ? 'all of them' : JSON.stringify(host)})`);
  }
  return problems;
}

/**
 * What the sandbox's simulator plays: YCloud, Meta's Graph API, or Meta with the number in SIP mode
 * (`meta-sip`: the calls are SIP over TLS between the bridge and a simulated Meta SIP gateway, the rest
 * Graph as for `meta`).
 */
export const SANDBOX_PROVIDERS = ['ycloud', 'meta', 'meta-sip'] as const;
export type SandboxProvider = typeof SANDBOX_PROVIDERS[number];

export function sandboxProvider(env: Env): SandboxProvider {
  const p = env.WA_PROVIDER?.trim();
  return p === 'meta' || p === 'meta-sip' ? p : 'ycloud';
}

/** The TLS contact of the sandbox's drachtio-server that is Meta's (`--provider meta-sip`), and its certificate. */
export interface SandboxSipTlsContact {
  host: string;
  port: number;
  tls: SandboxTls;
}

/** What `--provider meta-sip` adds: where Meta's side talks SIP to the bridge, and to whom. */
export interface SandboxMetaSip {
  /** The simulated Meta SIP gateway (its own drachtio-server and rtpengine). */
  gateway: LocalMetaSipSim;
  /** The bridge's TLS contact for Meta, and the hostname its certificate names. */
  bridgeContact: SandboxSipTlsContact;
  srtp: 'dtls' | 'sdes';
}

/** The sandbox's own settings (SANDBOX_*), with their defaults. */
export interface SandboxSettings {
  /**
   * SANDBOX_HOST (--listen): the address the page is served on and the browser's media reaches (the
   * bridge's HTTP_HOST and PUBLIC_IP, rtpengine's WhatsApp-side interface); 127.0.0.1 by default. Another
   * machine on the LAN can open the sandbox when it is a LAN address.
   */
  host: string;
  userNumber: string;
  businessNumber: string;
  businessName: string;
  phoneId: string;
}

export function sandboxSettings(env: Env): SandboxSettings {
  return {
    host: env.SANDBOX_HOST?.trim() || '127.0.0.1',
    userNumber: env.SANDBOX_USER_NUMBER?.trim() || '+15550100001',
    businessNumber: env.WA_BUSINESS_NUMBER?.trim() || '+15550100000',
    businessName: env.SANDBOX_BUSINESS_NAME?.trim() || 'Demo Business',
    phoneId: env.WA_PHONE_ID?.trim() || '100000000000001',
  };
}

export interface Sandbox {
  bridge: Bridge;
  sim: ProviderSim;
  /** `--provider meta-sip`: Meta's SIP side; null otherwise. */
  metaSip: SandboxMetaSip | null;
  phone: PhoneServer;
  /** The built-in demo agent when no PBX_TARGET was given; null otherwise. */
  demo: DemoAgent | null;
  /** The browser phone's address. */
  url: string;
  stop(): Promise<void>;
}

export class SandboxConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`the sandbox cannot start: ${problems.join('; ')}`);
    this.name = 'SandboxConfigError';
  }
}

/**
 * The bridge wired to the built-in YCloud simulator (a real HTTP server on loopback, signed webhooks),
 * the browser phone at /sandbox, and, with no PBX_TARGET, the demo agent as the PBX. `env` holds the
 * bridge's usual settings (database, drachtio-server, rtpengine); the YCloud ones are the simulator's.
 */
export async function startSandbox(env: Env, log: Logger, o: { metaSipContact?: SandboxSipTlsContact } = {}): Promise<Sandbox> {
  const problems = sandboxEnvProblems(env);
  const provider = sandboxProvider(env);
  if (provider === 'meta-sip' && !o.metaSipContact) {
    problems.push("--provider meta-sip needs the sandbox's own drachtio-server, which it gives a TLS contact for Meta's side: unset DRACHTIO_HOST");
  }
  const srtp = env.META_SIP_SRTP?.trim() || 'dtls';
  if (provider === 'meta-sip' && srtp !== 'dtls' && srtp !== 'sdes') problems.push(`META_SIP_SRTP must be dtls or sdes, not ${JSON.stringify(srtp)}`);
  if (problems.length) throw new SandboxConfigError(problems);
  const s = sandboxSettings(env);
  // --listen: the browser's media comes to that address, on Meta's side (meta-sip) as on the bridge's.
  const listenAsked = Boolean(env.SANDBOX_HOST?.trim());
  // The simulator speaks YCloud's wire format, or Meta's Graph API with WA_PROVIDER=meta or meta-sip.
  const face = provider === 'ycloud' ? 'ycloud' : 'meta';
  const wabaId = env.WA_WABA_ID?.trim() || '100000000000002';
  const sim = new ProviderSim({
    face, apiKey: `${SANDBOX_KEY_PREFIX}${crypto.randomBytes(12).toString('hex')}`, secret: crypto.randomBytes(24).toString('hex'),
    verifyToken: crypto.randomBytes(12).toString('hex'),
  });
  sim.addLine({ phoneId: s.phoneId, number: s.businessNumber, wabaId });
  // A business must have the customer's permission before calling, as on WhatsApp: the page grants it.
  sim.enforcePermissions = true;
  let demo: DemoAgent | null = null;
  let bridge: Bridge | null = null;
  let phone: PhoneServer | null = null;
  let metaSip: SandboxMetaSip | null = null;
  const stopAll = async () => {
    phone?.close();
    await bridge?.stop();
    await metaSip?.gateway.stop();
    await demo?.stop();
    await sim.stop();
  };
  try {
    await sim.start();
    // `--provider meta-sip`: the number is in Meta's SIP mode, with a random SIP password the simulated
    // gateway shares; it trusts the sandbox's CA as Meta trusts public ones.
    const sipPassword = crypto.randomBytes(12).toString('hex');
    const contact = o.metaSipContact;
    if (provider === 'meta-sip' && contact) {
      const g711 = env.META_SIP_G711?.trim() === 'true';
      const gateway = await startMetaSipSim({
        bridge: { host: contact.host, port: contact.port }, ca: contact.tls.caFile, log,
        ...(listenAsked ? { mediaAddress: s.host } : {}),
        numbers: [{ number: s.businessNumber, phoneId: s.phoneId, hostname: contact.tls.hostname, port: contact.port, password: sipPassword, srtp: srtp as 'dtls' | 'sdes', g711 }],
      });
      metaSip = { gateway, bridgeContact: contact, srtp: srtp as 'dtls' | 'sdes' };
    }
    const pbxTarget = env.PBX_TARGET?.trim();
    if (!pbxTarget) {
      demo = new DemoAgent({ host: '127.0.0.1', log });
      await demo.start();
    }
    const config = loadConfig({
      HTTP_HOST: '127.0.0.1',
      NODE_ID: 'sandbox',
      PUBLIC_IP: '127.0.0.1',
      ALLOW_PRIVATE_PUBLIC_IP: 'true',
      // Agents' calls come from a PBX on this machine; another one is named here.
      SIP_TRUSTED_SOURCES: '127.0.0.1',
      WA_PHONE_ID: s.phoneId,
      PERMISSION_AUTO_REQUEST: 'interactive',
      PERMISSION_REQUEST_TEXT: `${s.businessName} would like to call you back about your request.`,
      // Nothing to drain for: a sandbox stops at once.
      SHUTDOWN_DRAIN_S: '0',
      ...env,
      // --listen: the page and the browser's media on that address, whatever HTTP_HOST and PUBLIC_IP said.
      ...(listenAsked ? { HTTP_HOST: s.host, PUBLIC_IP: s.host } : {}),
      WA_BUSINESS_NUMBER: s.businessNumber,
      PBX_TARGET: pbxTarget || demo!.uri,
      ...(face === 'meta'
        ? { WA_PROVIDER: 'meta', WA_WABA_ID: wabaId, META_API_BASE_URL: sim.baseUrl, META_ACCESS_TOKEN: sim.apiKey, META_APP_SECRET: sim.secret, META_VERIFY_TOKEN: sim.verifyToken }
        : { YCLOUD_API_BASE_URL: sim.baseUrl, YCLOUD_API_KEY: sim.apiKey, YCLOUD_WEBHOOK_SECRET: sim.secret }),
      ...(metaSip
        ? {
          META_SIP_HOSTNAME: metaSip.bridgeContact.tls.hostname, META_SIP_PORT: String(metaSip.bridgeContact.port), META_SIP_PASSWORD: sipPassword,
          META_SIP_SRTP: metaSip.srtp, META_SIP_LISTEN_PORT: String(metaSip.bridgeContact.port),
          META_SIP_PROXY: `sip:${metaSip.gateway.tlsContact.host}:${metaSip.gateway.tlsContact.port};transport=tls`,
        }
        : {}),
    });
    const b = new Bridge(config, log, {
      routes: (started) => {
        phone = new PhoneServer({ sim, cdr: started.cdr, log, ...s, pageHost: s.host, pbx: demo ? 'demo agent' : config.pbx.targets.join(', '), metaSip: metaSip?.gateway.sim });
        return [phone.routes()];
      },
    });
    bridge = b;
    demo?.on('event', (e) => phone?.timeline({ at: e.at, kind: 'demo', title: e.text, detail: { callId: e.callId, ...e.detail } }));
    await b.start();
    // WhatsApp remembers a grant across restarts: so does the simulator, from what the bridge recorded.
    const granted = await b.permissions.check(s.businessNumber, s.userNumber);
    if (granted.allowed) sim.grant(s.userNumber, granted.expiresAt?.getTime() ?? null);
    // The bridge's HTTP server is on HTTP_HOST (all addresses: then loopback reaches it too).
    const host = config.httpHost && config.httpHost !== '0.0.0.0' && config.httpHost !== '::' ? config.httpHost : '127.0.0.1';
    const origin = `http://${host.includes(':') ? `[${host}]` : host}:${b.httpPort}`;
    sim.webhookUrl = `${origin}/webhooks/${face}`;
    return { bridge: b, sim, metaSip, phone: phone!, demo, url: `${origin}/sandbox`, stop: stopAll };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/** 127.0.0.0/8 or ::1: the sandbox as it is by default, for this machine's browser only. */
export function isLoopbackAddress(ip: string): boolean {
  return (net.isIPv4(ip) && ip.startsWith('127.')) || ip === '::1';
}

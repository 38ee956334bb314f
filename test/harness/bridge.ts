import path from 'node:path';
import { Bridge } from '../../src/app';
import { MarkLog } from './mark-log';
import { Config, loadConfig } from '../../src/config';
import { DestinationStream } from 'pino';
import { createLogger } from '../../src/log';
import { infra } from './infra';
import { DEFAULT_LINE, FaceName, ProviderSim } from './ycloud-sim';
import { watch } from './watch';

let stackSeq = 0;

export interface TestStack { bridge: Bridge; sim: ProviderSim; marks: MarkLog; stop: () => Promise<void> }

/** The providers the simulator can stand in for: suites run once per provider with forEachProvider. */
export const PROVIDERS = ['ycloud', 'meta'] as const satisfies readonly FaceName[];
export type ProviderName = (typeof PROVIDERS)[number];

/**
 * Runs a suite once per provider, each in its own describe block ("with ycloud", "with meta"):
 * `fn` starts its stacks with `{ provider }`. `only` narrows the list (e.g. while a face is missing a feature).
 */
export function forEachProvider(fn: (provider: ProviderName) => void, only: readonly ProviderName[] = PROVIDERS): void {
  for (const provider of only) describe(`with ${provider}`, () => fn(provider));
}

/**
 * `logStream`: the bridge's log lines go there (at LOG_LEVEL) instead of stdout; `provider`: which
 * provider the simulator and the bridge speak (YCloud by default); the credentials can be chosen
 * (`apiKey`: YCloud's API key or Meta's access token; `webhookSecret`: YCloud's endpoint secret or
 * Meta's App Secret; `authHeader`: Meta's token header, e.g. D360-API-KEY).
 */
export interface StackOptions { logStream?: DestinationStream; apiKey?: string; webhookSecret?: string; provider?: ProviderName; authHeader?: string }

/** A started simulator with the face and credentials a stack asks for. */
export async function startSim(opts: StackOptions = {}): Promise<ProviderSim> {
  const meta = opts.provider === 'meta';
  const sim = new ProviderSim({
    face: opts.provider ?? 'ycloud',
    apiKey: opts.apiKey ?? (meta ? 'test-access-token' : 'test-api-key'),
    secret: opts.webhookSecret ?? (meta ? 'test-app-secret' : 'test-webhook-secret'),
    ...(meta ? { verifyToken: 'test-verify-token' } : {}),
    ...(opts.authHeader ? { authHeader: opts.authHeader } : {}),
  });
  await sim.start();
  return sim;
}

/**
 * Starts the provider simulator and the bridge (in-process, HTTP on a random loopback port) against
 * the run's database, rtpengine and drachtio-server. `env` overrides settings, e.g. PBX_TARGET.
 */
export async function startStack(env: Record<string, string> = {}, opts: StackOptions = {}): Promise<TestStack> {
  const sim = await startSim(opts);
  const config: Config = loadConfig(bridgeEnv(sim, env));
  const bridge = new Bridge(config, createLogger(config.logLevel, {}, { destination: opts.logStream }));
  const marks = new MarkLog(bridge.marks);
  watch(bridge);
  await bridge.start({ sipWaitMs: infra.drachtio ? 5000 : 0 });
  sim.webhookUrl = `http://127.0.0.1:${bridge.httpPort}/webhooks/${sim.face}`;
  return {
    bridge,
    sim,
    marks,
    stop: async () => {
      await bridge.stop();
      await sim.stop();
    },
  };
}

/** The bridge's settings for a test: the run's database, rtpengine and drachtio-server, and `sim` (either face). */
export function bridgeEnv(sim: ProviderSim, env: Record<string, string> = {}): Record<string, string> {
  return { ...infraEnv(), ...providerEnv(sim), ...env };
}

/** The settings that point a bridge's single number at `sim`: YCLOUD_* for its YCloud face, WA_PROVIDER=meta and META_* for its Meta face. */
export function providerEnv(sim: ProviderSim): Record<string, string> {
  if (sim.face === 'ycloud') return { YCLOUD_API_BASE_URL: sim.baseUrl, YCLOUD_API_KEY: sim.apiKey, YCLOUD_WEBHOOK_SECRET: sim.secret };
  return {
    WA_PROVIDER: 'meta',
    META_API_BASE_URL: sim.baseUrl,
    META_ACCESS_TOKEN: sim.apiKey,
    META_APP_SECRET: sim.secret,
    META_VERIFY_TOKEN: sim.verifyToken,
    // Meta's calls go to /{phoneId}/calls: the bridge's number is the simulator's first line.
    WA_BUSINESS_NUMBER: DEFAULT_LINE.number,
    WA_PHONE_ID: DEFAULT_LINE.phoneId,
    WA_WABA_ID: DEFAULT_LINE.wabaId,
    ...(sim.authHeader !== 'Authorization' ? { META_AUTH_HEADER: sim.authHeader } : {}),
  };
}

/** The settings that put a bridge on the run's database, rtpengine and drachtio-server (no YCloud ones). */
export function infraEnv(): Record<string, string> {
  const d = infra.drachtio;
  return {
    DATABASE_URL: infra.databaseUrl,
    HTTP_PORT: '0',
    // One node id per stack: a stack's start-up takes over what an earlier one with its id left behind.
    NODE_ID: `test-node-${process.pid}-${++stackSeq}`,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    DRACHTIO_HOST: '127.0.0.1',
    DRACHTIO_PORT: String(d?.adminPort ?? 1),
    DRACHTIO_SECRET: d?.secret ?? 'none',
    RTPENGINE_NG: `${infra.rtpengineNg!.host}:${infra.rtpengineNg!.port}`,
    RTPENGINE_DTMF_LOG: `${infra.rtpengineDtmfLog!.host}:${infra.rtpengineDtmfLog!.port}`,
    MEDIA_DIR: infra.mediaDir,
    // The run's own: CDR writes spilled by one test's bridge are never replayed by another run's.
    CDR_SPILL_DIR: path.join(infra.mediaDir, 'cdr-spill'),
    PBX_TARGET: 'sip:127.0.0.1:9',
    // Loopback stands in for the public address (the NAT test gives WhatsApp another one).
    PUBLIC_IP: '127.0.0.1',
    ALLOW_PRIVATE_PUBLIC_IP: 'true',
    // SIPp scenarios take the first request as their call: pings are off unless a test turns them on.
    PBX_OPTIONS_PING_S: '0',
    // Tests need not wait 8 s of silence before the keepalive file starts.
    MEDIA_KEEPALIVE_AFTER_MS: '2000',
  };
}

/**
 * Delivers a signed webhook body and resolves once the bridge has acted on every event in it (YCloud:
 * one; a Meta batch: each call event, status and message). Status 200 is asserted by the caller.
 */
export async function deliverAndProcess(stack: TestStack, event: Record<string, unknown>): Promise<number> {
  const w = watch(stack.bridge);
  const processed = Promise.all(stack.sim.deliveryIds(event).map((id) => w.whenProcessed(id)));
  const status = await stack.sim.deliver(event);
  if (status === 200) await processed;
  return status;
}

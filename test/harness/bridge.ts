import path from 'node:path';
import { Bridge } from '../../src/app';
import { MarkLog } from './mark-log';
import { Config, loadConfig } from '../../src/config';
import { DestinationStream } from 'pino';
import { createLogger } from '../../src/log';
import { infra } from './infra';
import { YCloudSim } from './ycloud-sim';
import { watch } from './watch';

let stackSeq = 0;

export interface TestStack { bridge: Bridge; sim: YCloudSim; marks: MarkLog; stop: () => Promise<void> }

/** `logStream`: the bridge's log lines go there (at LOG_LEVEL) instead of stdout; the YCloud credentials can be chosen. */
export interface StackOptions { logStream?: DestinationStream; apiKey?: string; webhookSecret?: string }

/**
 * Starts the YCloud simulator and the bridge (in-process, HTTP on a random loopback port) against
 * the run's database, rtpengine and drachtio-server. `env` overrides settings, e.g. PBX_TARGET.
 */
export async function startStack(env: Record<string, string> = {}, opts: StackOptions = {}): Promise<TestStack> {
  const sim = new YCloudSim(opts.apiKey ?? 'test-api-key', opts.webhookSecret ?? 'test-webhook-secret');
  await sim.start();
  const config: Config = loadConfig(bridgeEnv(sim, env));
  const bridge = new Bridge(config, createLogger(config.logLevel, {}, { destination: opts.logStream }));
  const marks = new MarkLog(bridge.marks);
  watch(bridge);
  await bridge.start({ sipWaitMs: infra.drachtio ? 5000 : 0 });
  sim.webhookUrl = `http://127.0.0.1:${bridge.httpPort}/webhooks/ycloud`;
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

/** The bridge's settings for a test: the run's database, rtpengine and drachtio-server, and `sim`. */
export function bridgeEnv(sim: YCloudSim, env: Record<string, string> = {}): Record<string, string> {
  return {
    ...infraEnv(),
    YCLOUD_API_BASE_URL: sim.baseUrl,
    YCLOUD_API_KEY: sim.apiKey,
    YCLOUD_WEBHOOK_SECRET: sim.secret,
    ...env,
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

/** Delivers a signed event and resolves once the bridge has acted on it (status 200 asserted by the caller). */
export async function deliverAndProcess(stack: TestStack, event: Record<string, unknown>): Promise<number> {
  const processed = watch(stack.bridge).whenProcessed(String(event.id));
  const status = await stack.sim.deliver(event);
  if (status === 200) await processed;
  return status;
}

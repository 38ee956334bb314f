import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { Op } from 'sequelize';
import { connectDatabase } from '../src/cdr/db';
import { PermissionStore } from '../src/calls/permissions';
import { PermissionRecords } from '../src/cdr/permission-records';
import { createLogger } from '../src/log';
import { bridgeEnv, startStack, TestStack } from './harness/bridge';
import { BridgeProcess } from './harness/bridge-process';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { databaseUrlVia, infra } from './harness/infra';
import { freePort } from './harness/processes';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { refusalScenario, runSippUac, SippRun, startSippUas } from './harness/sipp';
import { TcpProxy } from './harness/tcp-proxy';
import { grantPermanentPermission } from './harness/permissions';
import { WaUser } from './harness/wa-user';
import { YCloudSim } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';
const AGENT_TONE = 1000;
const USER_TONE = 440;

/** The admin token of the bridge whose /readyz details a test reads (the rtpengine addresses are for it only). */
const ADMIN = 'shutdown-admin-token-0123456789';

async function readyz(port: number): Promise<{ status: number; body: { ok: boolean; checks: Record<string, unknown>; details?: Record<string, unknown> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  return { status: res.status, body: (await res.json()) as { ok: boolean; checks: Record<string, unknown>; details?: Record<string, unknown> } };
}

async function grantPermission(): Promise<void> {
  const db = connectDatabase(infra.databaseUrl);
  const store = new PermissionStore(new PermissionRecords(db), createLogger('silent'));
  await grantPermanentPermission(store, BUSINESS, CUSTOMER);
  await db.close();
}

/**
 * Draining and stopping: the bridge as a real process, with its own drachtio-server and rtpengine so
 * a test can take them away; and readiness, which names each dependency and follows it.
 */
describe('shutdown and readiness', function () {
  this.timeout(90000);
  let drachtio: DrachtioServer | null = null;
  let rtp: RtpengineInstance | null = null;
  let sim: YCloudSim | null = null;
  let bridge: BridgeProcess | null = null;
  let stack: TestStack | null = null;
  let proxy: TcpProxy | null = null;
  const sipps: SippRun[] = [];
  const users: WaUser[] = [];
  const phones: RtpPhone[] = [];

  before(function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
  });

  beforeEach(async () => {
    drachtio = await startDrachtio(findDrachtio()!);
    rtp = await startRtpengine({ portMin: 37200, portMax: 37399 });
    sim = new YCloudSim('test-api-key', 'test-webhook-secret');
    await sim.start();
  });

  afterEach(async () => {
    for (const u of users.splice(0)) u.close();
    for (const p of phones.splice(0)) p.stop();
    for (const s of sipps.splice(0)) await s.proc.stop();
    await bridge?.stop();
    await stack?.stop();
    await proxy?.close();
    await sim?.stop();
    await rtp?.proc.stop();
    await drachtio?.proc.stop();
    bridge = stack = proxy = sim = rtp = drachtio = null;
  });

  /** The bridge's settings against this test's own drachtio-server and rtpengine. */
  function ownEnv(env: Record<string, string> = {}): Record<string, string> {
    return bridgeEnv(sim!, {
      DRACHTIO_PORT: String(drachtio!.adminPort),
      DRACHTIO_SECRET: drachtio!.secret,
      RTPENGINE_NG: `${rtp!.ng.host}:${rtp!.ng.port}`,
      RTPENGINE_DTMF_LOG: '',
      RTPENGINE_PING_S: '1',
      LOG_LEVEL: 'info',
      ...env,
    });
  }

  async function startBridgeProcess(env: Record<string, string>): Promise<{ b: BridgeProcess; httpPort: number }> {
    const httpPort = await freePort('tcp');
    const b = (bridge = new BridgeProcess(ownEnv({ HTTP_PORT: String(httpPort), ...env })));
    await b.started();
    await b.proc.waitFor(/connected to drachtio-server/, 10000);
    sim!.webhookUrl = `http://127.0.0.1:${httpPort}/webhooks/ycloud`;
    return { b, httpPort };
  }

  /** An agent's call that WhatsApp accepts: up once both sides hear each other. */
  async function agentCallUp(scenario = 'uac-call.xml'): Promise<SippRun> {
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    const rtpPort = await phone.start();
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    sim!.outboundScript = sim!.answeredBy(user);
    const sipp = await runSippUac(scenario, { target: `127.0.0.1:${drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
    sipps.push(sipp);
    await user.heard.whenHeard(10);
    await phone.heard.whenHeard(10);
    return sipp;
  }

  /** The agent's phone behind the PBX, for WhatsApp users' calls (its URI is the bridge's PBX_TARGET). */
  async function agentPhone(): Promise<{ uri: string; phone: RtpPhone }> {
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    const sipp = await startSippUas('uas-answer.xml', { rtpPort: await phone.start() });
    sipps.push(sipp);
    return { uri: sipp.uri, phone };
  }

  /** A WhatsApp user's call that the agent answers: up once both sides hear each other. */
  async function userCallUp(phone: RtpPhone): Promise<void> {
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    await sim!.userCalls(user, { to: BUSINESS });
    await user.heard.whenHeard(10);
    await phone.heard.whenHeard(10);
  }

  async function storedWebhook(id: string): Promise<boolean> {
    const db = connectDatabase(infra.databaseUrl);
    try {
      const [rows] = await db.query('SELECT id FROM webhook_events WHERE id = :id', { replacements: { id } });
      return rows.length === 1;
    } finally {
      await db.close();
    }
  }

  /** The CDRs the bridge process wrote, read through models of the test's own. */
  function cdrsOf(since: Date): Promise<CallRecord[]> {
    return rows().CallRecord.findAll({ where: { offered_at: { [Op.gte]: since } }, order: [['offered_at', 'ASC']] });
  }

  it('readiness names Postgres, drachtio-server and every rtpengine; a dead rtpengine gets no new calls; each dependency gone turns it false', async () => {
    proxy = new TcpProxy(infra.isolated ? { path: '/var/run/postgresql/.s.PGSQL.5432' } : { host: '127.0.0.1', port: 5432 });
    const dbPort = await proxy.start();
    const second = await startRtpengine({ portMin: 37600, portMax: 37799 });
    try {
      const phone = new RtpPhone(AGENT_TONE, USER_TONE);
      phones.push(phone);
      const pbx = await startSippUas('uas-answer.xml', { rtpPort: await phone.start() });
      sipps.push(pbx);
      stack = await startStack(ownEnv({
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent', DATABASE_URL: databaseUrlVia(dbPort), DATABASE_TIMEOUT_MS: '1000',
        RTPENGINE_NG: `${rtp!.ng.host}:${rtp!.ng.port},${second.ng.host}:${second.ng.port}`, PBX_TARGET: pbx.uri, ADMIN_API_TOKEN: ADMIN,
      }));
      const s = stack;
      const port = s.bridge.httpPort;
      // ownEnv() points the bridge at this test's simulator (not the one startStack made).
      sim!.webhookUrl = `http://127.0.0.1:${port}/webhooks/ycloud`;
      const first = `${rtp!.ng.host}:${rtp!.ng.port}`;
      const other = `${second.ng.host}:${second.ng.port}`;
      let r = await readyz(port);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.checks, { postgres: true, sip: true, rtpengine: true, draining: false, cluster: true });
      assert.deepEqual(r.body.details?.rtpengine, { [first]: true, [other]: true });

      const wentDown = (which: string) => new Promise<void>((resolve) => s.bridge.rtp.on('health', (at, alive) => at === which && !alive && resolve()));
      const firstDown = wentDown(first);
      await rtp!.proc.stop();
      await firstDown;
      r = await readyz(port);
      assert.equal(r.status, 200, 'one rtpengine answering is enough to take calls');
      assert.equal(r.body.checks.rtpengine, true);
      assert.deepEqual(r.body.details?.rtpengine, { [first]: false, [other]: true });
      // A call now goes to the rtpengine that answers, whichever one round robin would have picked.
      const user = new WaUser(USER_TONE, AGENT_TONE);
      users.push(user);
      const { wacid } = await sim!.userCalls(user, { to: BUSINESS });
      await user.heard.whenHeard(10);
      await phone.heard.whenHeard(10);
      await sim!.userHangsUp(wacid);
      const row = await rows().CallRecord.findByPk(await whenEnded(s.bridge, wacid));
      assert.equal(row?.outcome, 'answered');

      const otherDown = wentDown(other);
      await second.proc.stop();
      await otherDown;
      r = await readyz(port);
      assert.equal(r.status, 503);
      assert.equal(r.body.checks.rtpengine, false);
      assert.deepEqual(r.body.details?.rtpengine, { [first]: false, [other]: false });

      const sipDown = new Promise<void>((resolve) => (s.bridge.sip.srf as unknown as NodeJS.EventEmitter).once('close', () => resolve()));
      await drachtio!.proc.stop();
      await sipDown;
      r = await readyz(port);
      assert.equal(r.body.checks.sip, false);

      assert.equal(r.body.checks.postgres, true);
      await proxy.close();
      r = await readyz(port);
      assert.equal(r.status, 503);
      assert.equal(r.body.checks.postgres, false);
    } finally {
      await second.proc.stop();
    }
  });

  it('starts while Postgres is still unreachable, and goes on once it answers', async () => {
    const dbPort = await freePort('tcp');
    proxy = new TcpProxy(infra.isolated ? { path: '/var/run/postgresql/.s.PGSQL.5432' } : { host: '127.0.0.1', port: 5432 });
    const httpPort = await freePort('tcp');
    const b = (bridge = new BridgeProcess(ownEnv({ HTTP_PORT: String(httpPort), DATABASE_URL: databaseUrlVia(dbPort), DATABASE_TIMEOUT_MS: '500' })));
    await b.proc.waitFor(/Postgres not reachable yet; retrying/);
    await proxy.start(dbPort);
    await b.started();
    assert.equal((await readyz(httpPort)).body.checks.postgres, true);
  });

  it('SIGTERM drains: not ready, new INVITEs get 503 with Retry-After, new WhatsApp calls are stored and rejected, the call in progress finishes, then the process exits', async () => {
    await grantPermission();
    const since = new Date();
    const { b, httpPort } = await startBridgeProcess({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', SHUTDOWN_DRAIN_S: '60', SHUTDOWN_RETRY_AFTER_S: '17' });
    const call = await agentCallUp('uac-call-hangup.xml');
    b.proc.child.kill('SIGTERM');
    await b.proc.waitFor(/draining: waiting for calls in progress to end/);
    const r = await readyz(httpPort);
    assert.equal(r.status, 503);
    assert.equal(r.body.checks.draining, true);

    const refused = await runSippUac(await refusalScenario(503, '^ ?17$', undefined, 'Retry-After:'), { target: `127.0.0.1:${drachtio!.sipPort}`, number: CUSTOMER });
    sipps.push(refused);
    assert.equal(await refused.done, 0, `a new INVITE got 503 with Retry-After: 17:\n${refused.proc.output.slice(0, 1500)}`);

    // A WhatsApp user calls meanwhile: the webhook is taken (200, stored) and the call rejected at once.
    const caller = new WaUser(USER_TONE, AGENT_TONE);
    users.push(caller);
    const late = await sim!.userCalls(caller, { to: BUSINESS });
    assert.equal(late.status, 200);
    assert.ok(await sim!.waitForRequest('/calls/reject', late.wacid));

    // The agent hangs up by itself: the bridge has nothing left and exits, long before the drain limit.
    const agentDone = await call.done;
    const hungUpAt = performance.now();
    assert.equal(agentDone, 0, call.proc.output.slice(-1500));
    const code = await b.proc.exited;
    console.log(`      (exit ${Math.round(performance.now() - hungUpAt)} ms after the last call ended; drain limit 60 s)`);
    assert.equal(code, 0);
    const rows = await cdrsOf(since);
    assert.deepEqual(rows.map((x) => [x.direction, x.outcome, x.hangup_by]), [['outbound', 'answered', 'pbx'], ['inbound', 'failed', 'bridge']],
      'the refused INVITE left no call behind; the WhatsApp call has its CDR');
    assert.equal(rows[1]!.error, 'bridge is shutting down');
    assert.ok(await storedWebhook(late.eventId), 'the connect webhook is stored');
  });

  it('SIGTERM with calls up while drachtio-server, rtpengine and YCloud are all gone: exits within its bounds, every CDR closed', async () => {
    await grantPermission();
    const since = new Date();
    const pbx = await agentPhone();
    const timeouts = { YCLOUD_TIMEOUT_MS: '1000', RTPENGINE_TIMEOUT_MS: '500', SIP_REQUEST_TIMEOUT_MS: '1000', PBX_RESPONSE_TIMEOUT_MS: '1000', DATABASE_TIMEOUT_MS: '2000' };
    const drainS = 1;
    const { b } = await startBridgeProcess({
      SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', SHUTDOWN_DRAIN_S: String(drainS),
      ...timeouts,
      PBX_TARGET: pbx.uri,
    });
    await agentCallUp();
    await userCallUp(pbx.phone);
    await Promise.all([drachtio!.proc.stop(), rtp!.proc.stop(), sim!.stop()]);
    const { code, ms } = await b.signal('SIGTERM');
    // The limit: the drain, then each bounded step (see stopBoundMs in src/index.ts).
    const limitMs = drainS * 1000 + 1000 + 2 * 1000 + 3 * 2000 + 5000;
    assert.ok(ms < limitMs, `exited after ${Math.round(ms)} ms (limit ${limitMs} ms)`);
    assert.equal(code, 0, b.proc.output.slice(-3000));
    const rows = await cdrsOf(since);
    assert.deepEqual(rows.map((r) => r.direction).sort(), ['inbound', 'outbound']);
    for (const row of rows) {
      assert.equal(row.state, 'ended', `CDR ${row.id} closed`);
      assert.ok(row.ended_at, 'with an end time');
      assert.equal(row.hangup_by, 'bridge');
      assert.equal(row.error, 'bridge shutdown');
    }
    console.log(`      (exit ${Math.round(ms)} ms after SIGTERM with drachtio-server, rtpengine and YCloud gone; drain limit ${drainS} s)`);
  });

  it('a wrong DRACHTIO_SECRET is logged as exactly that, and readiness says SIP is down', async () => {
    const httpPort = await freePort('tcp');
    const b = (bridge = new BridgeProcess(ownEnv({ HTTP_PORT: String(httpPort), DRACHTIO_SECRET: 'not-the-secret' })));
    await b.proc.waitFor(/DRACHTIO_SECRET does not match/, 15000);
    await b.started();
    const r = await readyz(httpPort);
    assert.equal(r.status, 503);
    assert.equal(r.body.checks.sip, false);
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bridge } from '../src/app';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { rows } from './harness/db-rows';
import { infraEnv, startStack, startSim, TestStack } from './harness/bridge';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { SippRun, startSippUas } from './harness/sipp';
import { SrfPbx } from './harness/srf-pbx';
import { WaUser } from './harness/wa-user';
import { watch, whenEnded } from './harness/watch';
import { ProviderSim } from './harness/ycloud-sim';
import { DEFAULT_LINE } from '../src/sandbox/simulator/engine';

const USER_TONE = 440;
const AGENT_TONE = 1000;
/** A WhatsApp user who hides their number: known by BSUID, profile name and username only. */
const HIDDEN = { number: null, userId: 'US.13491208655302741918', profileName: 'Ana María "Annie" O\'Neil', username: 'ana.m' };

/**
 * Issue 19 end to end, on the real stack: a caller known only by BSUID reaches a PBX (a drachtio-srf
 * PBX with its own drachtio-server and rtpengine) From a user it can dial back, with the profile name
 * as display name; the PBX dials that user back and the user's phone rings (the simulator checks
 * Meta's `recipient`); two numbers on two providers in one bridge each reach their own PBX route.
 */
describe('WhatsApp users without a number, and several numbers on several providers (issue 19)', function () {
  this.timeout(60000);
  let pbxSip: DrachtioServer | null = null;
  let pbxRtp: RtpengineInstance | null = null;
  let pbx: SrfPbx | null = null;
  let stack: TestStack | null = null;
  let phone: RtpPhone | null = null;
  const users: WaUser[] = [];

  before(async function () {
    if (!infra.drachtio) return this.skip();
    pbxSip = await startDrachtio(findDrachtio()!);
    pbxRtp = await startRtpengine({ portMin: 37600, portMax: 37799, interfaces: ['127.0.0.1'] });
  });

  after(async () => {
    await pbxSip?.proc.stop();
    await pbxRtp?.proc.stop();
  });

  afterEach(async () => {
    for (const u of users.splice(0)) u.close();
    phone?.stop();
    await stack?.stop();
    await pbx?.close();
    stack = pbx = phone = null;
  });

  const user = (): WaUser => {
    const u = new WaUser(USER_TONE, AGENT_TONE);
    users.push(u);
    return u;
  };

  it('a caller known only by BSUID reaches the PBX From their BSUID with their profile name; the PBX dials the From user back and the user\'s phone rings', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    pbx = new SrfPbx(pbxSip!, pbxRtp!, await phone.start());
    await pbx.connect();
    stack = await startStack({ PBX_TARGET: pbx.uri('udp'), SIP_TRUSTED_SOURCES: '127.0.0.0/8' }, { provider: 'meta' });
    const caller = user();
    const { wacid } = await stack.sim.userCalls(caller, { caller: HIDDEN, ctaPayload: 'spring-sale', deeplinkPayload: 'lp=claims' });
    await caller.heard.whenHeard(25);
    await phone.heard.whenHeard(25);

    const invite = pbx.invites[0]!;
    // The profile name is the display name, quoted so its quotes cannot end it; the From user is the BSUID.
    assert.match(invite.from, /^"Ana María \\"Annie\\" O'Neil" <sip:US\.13491208655302741918@/, `From: ${invite.from}`);
    assert.equal(invite.header('X-WhatsApp-User-Id'), HIDDEN.userId);
    assert.equal(invite.header('X-WhatsApp-Caller'), HIDDEN.userId);
    assert.equal(invite.header('X-WhatsApp-Username'), 'ana.m');
    assert.equal(invite.header('X-WhatsApp-Cta-Payload'), 'spring-sale');
    assert.equal(invite.header('X-WhatsApp-Deeplink-Payload'), 'lp=claims');
    assert.equal(invite.header('X-WhatsApp-Provider'), 'meta');
    await stack.sim.userHangsUp(wacid);
    const inbound = await rows().CallRecord.findByPk(await whenEnded(stack.bridge, wacid));
    assert.equal(inbound?.outcome, 'answered');
    assert.equal(inbound?.customer_number, HIDDEN.userId);
    assert.equal(inbound?.user_id, HIDDEN.userId);
    assert.equal(inbound?.profile_name, HIDDEN.profileName);
    assert.equal(inbound?.username, 'ana.m');
    assert.equal(inbound?.cta_payload, 'spring-sale');
    assert.equal(inbound?.deeplink_payload, 'lp=claims');
    assert.equal(inbound?.provider, 'meta');
    assert.equal(inbound?.provider_kind, 'meta');
    assert.equal(inbound?.number_name, 'default');

    // The agent calls back the From user, with a ticket for the CRM. The permission the user gave is
    // kept under their BSUID; Meta's connect names them by `recipient`, and their phone rings.
    await grantPermanentPermission(stack.bridge.permissions, DEFAULT_LINE.number, HIDDEN.userId);
    // The agent's phone for this call (an RtpPhone answers the address it first hears from).
    await pbx.close();
    phone.stop();
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    pbx = new SrfPbx(pbxSip!, pbxRtp!, await phone.start());
    await pbx.connect();
    const again = user();
    let reached: string | null = null;
    stack.sim.outboundScript = async (call) => {
      reached = call.user?.userId ?? null;
      await stack!.sim.answeredBy(again)(call);
    };
    const dialog = await pbx.call(`sip:${HIDDEN.userId}@127.0.0.1:${infra.drachtio!.sipPort}`, { srtp: false, headers: { 'X-WhatsApp-Context': 'ticket-4711' } });
    assert.ok(dialog, 'the agent\'s call was answered');
    await again.heard.whenHeard(25);
    await phone.heard.whenHeard(25);
    assert.equal(reached, HIDDEN.userId, 'the simulated user reached by recipient is the caller');
    const connect = stack.sim.requests.find((r) => r.op === 'connect')!;
    assert.equal(connect.to, HIDDEN.userId);
    assert.equal(connect.body.recipient, HIDDEN.userId, 'Meta\'s connect names a user without a number by recipient');
    assert.equal(connect.body.to, undefined);
    const context = JSON.parse(connect.context ?? '{}') as { call?: string; context?: string };
    assert.equal(context.context, 'ticket-4711');
    await pbx.hangup();
    const outbound = await rows().CallRecord.findByPk(await whenEnded(stack.bridge, context.call!));
    assert.equal(outbound?.direction, 'outbound');
    assert.equal(outbound?.outcome, 'answered');
    assert.equal(outbound?.customer_number, HIDDEN.userId);
    assert.equal(outbound?.user_id, HIDDEN.userId);
    assert.equal(outbound?.context, 'ticket-4711');
  });

  it('a caller without a number, on a YCloud number, cannot be dialled back by BSUID: the agent is refused, nothing placed', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    pbx = new SrfPbx(pbxSip!, pbxRtp!, await phone.start());
    await pbx.connect();
    stack = await startStack({ PBX_TARGET: pbx.uri('udp'), SIP_TRUSTED_SOURCES: '127.0.0.0/8' }, { provider: 'ycloud' });
    await grantPermanentPermission(stack.bridge.permissions, DEFAULT_LINE.number, HIDDEN.userId);
    const refused = await pbx.call(`sip:${HIDDEN.userId}@127.0.0.1:${infra.drachtio!.sipPort}`, { srtp: false }).then(
      () => null, (err: { status?: number }) => err.status ?? -1);
    assert.ok(refused !== null && refused >= 400, `refused (${refused})`);
    assert.equal(stack.sim.requests.some((r) => r.op === 'connect'), false, 'no call placed at YCloud');
  });

  describe('two numbers on two providers in one bridge (NUMBERS_FILE)', () => {
    let dir: string;
    const sipps: SippRun[] = [];
    const sims: ProviderSim[] = [];
    const extraPhones: RtpPhone[] = [];
    let bridge: Bridge | null = null;
    const SECRETS = { T19_YC_KEY: 'yc-key-for-issue-19', T19_YC_SECRET: 'yc-secret-for-issue-19', T19_META_TOKEN: 'meta-token-issue-19', T19_META_SECRET: 'meta-secret-issue-19', T19_META_VERIFY: 'meta-verify-issue-19' };

    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-numbers-'));
      Object.assign(process.env, SECRETS);
    });
    after(() => {
      fs.rmSync(dir, { recursive: true, force: true });
      for (const k of Object.keys(SECRETS)) delete process.env[k];
    });
    afterEach(async () => {
      await bridge?.stop();
      bridge = null;
      for (const s of sims.splice(0)) await s.stop();
      for (const s of sipps.splice(0)) await s.proc.stop();
      for (const p of extraPhones.splice(0)) p.stop();
    });

    it('each call reaches its own PBX route, and its CDR names its number and provider', async () => {
      const ycloud = await startSim({ provider: 'ycloud', apiKey: SECRETS.T19_YC_KEY, webhookSecret: SECRETS.T19_YC_SECRET });
      const meta = await startSim({ provider: 'meta', apiKey: SECRETS.T19_META_TOKEN, webhookSecret: SECRETS.T19_META_SECRET });
      sims.push(ycloud, meta);
      const SALES = { phoneId: '111111111111111', number: '+14155550100', wabaId: '900000000000001' };
      const SUPPORT = { phoneId: '222222222222222', number: '+4930555010', wabaId: '900000000000002' };
      ycloud.addLine(SALES);
      meta.addLine(SUPPORT);
      // Each PBX has its own agent phone (one RTP endpoint per call).
      phone = new RtpPhone(AGENT_TONE, USER_TONE);
      const supportPhone = new RtpPhone(AGENT_TONE, USER_TONE);
      extraPhones.push(supportPhone);
      const salesPbx = await startSippUas('uas-answer.xml', { rtpPort: await phone.start() });
      const supportPbx = await startSippUas('uas-answer.xml', { rtpPort: await supportPhone.start() });
      sipps.push(salesPbx, supportPbx);
      const file = path.join(dir, 'numbers.yaml');
      fs.writeFileSync(file, [
        'providers:',
        '  ycloud:',
        '    kind: ycloud',
        `    apiBaseUrl: ${ycloud.baseUrl}`,
        '    apiKey: { env: T19_YC_KEY }',
        '    webhookSecret: { env: T19_YC_SECRET }',
        '  meta-eu:',
        '    kind: meta',
        `    apiBaseUrl: ${meta.baseUrl}`,
        '    accessToken: { env: T19_META_TOKEN }',
        '    appSecret: { env: T19_META_SECRET }',
        '    verifyToken: { env: T19_META_VERIFY }',
        'numbers:',
        '  - name: sales',
        `    number: "${SALES.number}"`,
        `    phoneId: "${SALES.phoneId}"`,
        `    wabaId: "${SALES.wabaId}"`,
        '    provider: ycloud',
        `    pbx: { targets: ["${salesPbx.uri}"], requestUser: sales-queue }`,
        '  - name: support-de',
        `    number: "${SUPPORT.number}"`,
        `    phoneId: "${SUPPORT.phoneId}"`,
        '    provider: meta-eu',
        `    pbx: { targets: ["${supportPbx.uri}"] }`,
        '',
      ].join('\n'));
      const config = loadConfig({ ...infraEnv(), NUMBERS_FILE: file });
      bridge = new Bridge(config, createLogger(config.logLevel));
      watch(bridge);
      await bridge.start({ sipWaitMs: 5000 });
      ycloud.webhookUrl = `http://127.0.0.1:${bridge.httpPort}/webhooks/ycloud`;
      meta.webhookUrl = `http://127.0.0.1:${bridge.httpPort}/webhooks/meta-eu`;

      const toSales = user();
      const toSupport = user();
      const a = await ycloud.userCalls(toSales, { phoneId: SALES.phoneId });
      const b = await meta.userCalls(toSupport, { phoneId: SUPPORT.phoneId });
      await toSales.heard.whenHeard(25);
      await toSupport.heard.whenHeard(25);
      await ycloud.userHangsUp(a.wacid);
      await meta.userHangsUp(b.wacid);
      const sales = await rows().CallRecord.findByPk(await whenEnded(bridge, a.wacid));
      const support = await rows().CallRecord.findByPk(await whenEnded(bridge, b.wacid));
      assert.equal(sales?.outcome, 'answered');
      assert.equal(support?.outcome, 'answered');
      assert.deepEqual([sales?.number_name, sales?.provider, sales?.provider_kind, sales?.business_number], ['sales', 'ycloud', 'ycloud', SALES.number]);
      assert.deepEqual([support?.number_name, support?.provider, support?.provider_kind, support?.business_number], ['support-de', 'meta-eu', 'meta', SUPPORT.number]);
      // Each number's route: its own PBX, and the Request-URI user it names (else the business number).
      assert.match(sales?.pbx_target ?? '', new RegExp(`^sip:sales-queue@127\\.0\\.0\\.1:${salesPbx.port}`));
      assert.match(support?.pbx_target ?? '', new RegExp(`^sip:4930555010@127\\.0\\.0\\.1:${supportPbx.port}`));
      // Each provider was asked about its own call only.
      assert.ok(ycloud.requests.some((r) => r.op === 'accept' && r.wacid === a.wacid));
      assert.ok(meta.requests.some((r) => r.op === 'accept' && r.wacid === b.wacid));
      assert.equal(ycloud.requests.some((r) => r.wacid === b.wacid), false);
      assert.equal(meta.requests.some((r) => r.wacid === a.wacid), false);

      // A call to a number of the account that no entry names (and no catch-all): rejected at WhatsApp, with a CDR saying why.
      const stranger = user();
      const c = await meta.userCalls(stranger, { phoneId: '333333333333333', to: '+4930555099' });
      assert.ok(await meta.waitForRequest('reject', c.wacid));
      const refused = await rows().CallRecord.findByPk(await whenEnded(bridge, c.wacid));
      assert.equal(refused?.outcome, 'failed');
      assert.match(refused?.error ?? '', /no business number on this bridge has phone id 333333333333333/);
      assert.equal(meta.requests.some((r) => r.wacid === c.wacid && r.op === 'pre_accept'), false, 'nothing set up for it');
    });
  });
});

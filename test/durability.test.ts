import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import { CallRecord } from '../src/cdr/models';
import { rows, testDb } from './harness/db-rows';
import { connectDatabase } from '../src/cdr/db';
import { PermissionRecords } from '../src/cdr/permission-records';
import { RtpEngine } from '../src/media/rtpengine';
import { bridgeEnv, forEachProvider, ProviderName, startSim, startStack, TestStack } from './harness/bridge';
import { BridgeProcess } from './harness/bridge-process';
import { infra } from './harness/infra';
import { freePort } from './harness/processes';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, SippRun, startSippUas } from './harness/sipp';
import { grantPermanentPermission, permissionReplyEvent } from './harness/permissions';
import { PermissionStore } from '../src/calls/permissions';
import { createLogger } from '../src/log';
import { WaUser } from './harness/wa-user';
import { CANNED_WA_OFFER, cannedWaUser } from './harness/canned-offer';
import { newWacid, ProviderSim } from './harness/ycloud-sim';
import { MetaWebhooks } from '../src/providers/meta/webhook-source';
import { YCloudWebhooks } from '../src/providers/ycloud/webhook-source';
import { watch, whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';


/** A user's call's connect webhook, in the simulator's provider's format (the engine does not run the call). */
function connectEvent(sim: ProviderSim, wacid: string, at?: number): Record<string, unknown> {
  return sim.userCallWebhooks(wacid, { offer: CANNED_WA_OFFER, ...(at !== undefined ? { at } : {}) }).connect;
}

function terminateEvent(sim: ProviderSim, wacid: string): Record<string, unknown> {
  return sim.userCallWebhooks(wacid, { offer: CANNED_WA_OFFER }).terminate;
}

/** The one event id (dedupe key) of a webhook body holding one event. */
function eventId(sim: ProviderSim, ev: Record<string, unknown>): string {
  const ids = sim.deliveryIds(ev);
  assert.equal(ids.length, 1, `one event in ${JSON.stringify(ev).slice(0, 300)}`);
  return ids[0]!;
}

/** What a bridge stores of a webhook body before acting on it (its rows in webhook_events), as its provider's webhook source reads it. */
function storedRows(sim: ProviderSim, ev: Record<string, unknown>): Array<{ id: string; type: string; payload: unknown }> {
  const source = sim.face === 'meta'
    ? new MetaWebhooks({ name: 'meta', appSecret: sim.secret, verifyToken: sim.verifyToken })
    : new YCloudWebhooks(sim.secret, 300);
  const parsed = source.parse(Buffer.from(JSON.stringify(ev)));
  assert.ok(parsed.ok && !parsed.rejected?.length, `the webhook parses: ${JSON.stringify(parsed).slice(0, 500)}`);
  return parsed.deliveries.map((d) => ({ id: d.id, type: d.type, payload: d.payload }));
}

async function cdrByWacid(wacid: string): Promise<CallRecord[]> {
  return rows().CallRecord.findAll({ where: { wacid } });
}

/**
 * Events are processed at least once and calls outlive the process that bridged them: a bridge killed
 * mid-call, events stored but never processed, a terminate overtaking its connect, a connect repeated
 * after a restart or redelivered while in flight. The real bridge, Postgres, rtpengine, drachtio-server.
 */
describe('durable events and crash recovery', function () {
  this.timeout(60000);
  forEachProvider((provider) => durability(provider));
});

function durability(provider: ProviderName): void {
  const label = provider === 'meta' ? 'Meta' : 'YCloud';
  let stack: TestStack | null = null;
  let proc: BridgeProcess | null = null;
  let sim: ProviderSim | null = null;
  const sipps: SippRun[] = [];
  const users: WaUser[] = [];
  const phones: RtpPhone[] = [];

  before(function () {
    if (!infra.drachtio) this.skip(); // the run already said why, loudly, once
  });

  afterEach(async () => {
    for (const u of users.splice(0)) u.close();
    for (const p of phones.splice(0)) p.stop();
    for (const s of sipps.splice(0)) await s.proc.stop();
    await proc?.stop();
    await stack?.stop();
    await sim?.stop();
    proc = stack = sim = null;
  });

  async function startProcess(env: Record<string, string>): Promise<BridgeProcess> {
    const httpPort = await freePort('tcp');
    const p = (proc = new BridgeProcess(bridgeEnv(sim!, { HTTP_PORT: String(httpPort), RTPENGINE_DTMF_LOG: '', LOG_LEVEL: 'info', ...env })));
    await p.started();
    sim!.webhookUrl = `http://127.0.0.1:${httpPort}/webhooks/${sim!.face}`;
    return p;
  }

  it(`killed mid-call (SIGKILL): at restart the call is ended at ${label} and on the PBX, its rtpengine session deleted, its CDR closed with the reason`, async () => {
    // The bridge runs in child processes here: this process reads Postgres through models of its own (rows()).
    sim = await startSim({ provider });
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    const pbx = await startSippUas('uas-answer.xml', { rtpPort: await phone.start() });
    sipps.push(pbx);
    const env = { NODE_ID: `crash-${Date.now()}`, PBX_TARGET: pbx.uri };
    const first = await startProcess(env);
    await first.proc.waitFor(/connected to drachtio-server/, 10000);
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    const { wacid } = await sim.userCalls(user, { to: BUSINESS });
    await sim.waitForRequest('accept', wacid);
    await user.heard.whenHeard(10);
    await phone.heard.whenHeard(10);
    const [open] = await cdrByWacid(wacid);
    assert.ok(open && !open.ended_at, 'the call is up');
    const recovery = open.recovery as { rtpengine?: string; sip?: { callId: string } } | null;
    assert.ok(recovery?.rtpengine && recovery.sip?.callId, `the CDR keeps what ending the call needs: ${JSON.stringify(recovery)}`);

    await first.signal('SIGKILL');
    proc = null;
    const rtp = new RtpEngine([infra.rtpengineNg!], 2000);
    try {
      await rtp.query(infra.rtpengineNg!, { 'call-id': open.id }); // still there: nobody ended it
      const terminated = sim.waitForRequest('terminate', wacid);
      const second = await startProcess(env);
      await terminated;
      assert.equal(await pbx.done, 0, `the PBX got a BYE for its dialog:\n${pbx.proc.output.slice(-1200)}`);
      await assert.rejects(rtp.query(infra.rtpengineNg!, { 'call-id': open.id }), /Unknown call-id|not found/i, 'rtpengine session deleted');
      await second.proc.waitFor(/recovered from an unclean stop/, 5000);
    } finally {
      await rtp.close();
    }
    const [closed] = await cdrByWacid(wacid);
    assert.ok(closed?.ended_at, 'CDR closed');
    assert.equal(closed.outcome, 'answered');
    assert.equal(closed.hangup_by, 'bridge');
    assert.match(closed.error ?? '', /stopped while the call was in progress/);
    assert.ok(Number(closed.talk_seconds) > 0);
    const events = await rows().CallEvent.findAll({ where: { call_id: closed.id } });
    const recovered = events.find((e) => e.type === 'recovered');
    assert.ok(recovered, 'timeline says the call was recovered');
    assert.deepEqual(Object.keys((recovered.detail as { actions: object }).actions).sort(), ['pbx', 'rtpengine', 'whatsapp']);
  });

  it(`an agent's call, killed mid-call: at restart it is terminated at ${label}, the agent's phone gets a BYE, the CDR is closed`, async () => {
    const db = connectDatabase(infra.databaseUrl);
    after(() => db.close());
    const customer = '+6281361905133';
    await grantPermanentPermission(new PermissionStore(new PermissionRecords(db), createLogger('silent')), BUSINESS, customer);
    sim = await startSim({ provider });
    const env = { NODE_ID: `crash-out-${Date.now()}`, SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831' };
    const first = await startProcess(env);
    await first.proc.waitFor(/connected to drachtio-server/, 10000);
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    sim.outboundScript = sim.answeredBy(user);
    const agent = await runSippUac('uac-call.xml', { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: customer, rtpPort: await phone.start() });
    sipps.push(agent);
    await user.heard.whenHeard(10);
    await phone.heard.whenHeard(10);
    const open = await rows().CallRecord.findOne({ where: { node_id: env.NODE_ID } });
    assert.ok(open?.wacid && !open.ended_at, 'the call is up');
    await first.signal('SIGKILL');
    proc = null;
    const terminated = sim.waitForRequest('terminate', open.wacid);
    await startProcess(env);
    await terminated;
    assert.equal(await agent.done, 0, `the agent's phone got a BYE:\n${agent.proc.output.slice(-1200)}`);
    await open.reload();
    assert.ok(open.ended_at);
    assert.equal(open.direction, 'outbound');
    assert.equal(open.outcome, 'answered');
    assert.match(open.error ?? '', /recovered at restart/);
  });

  it('at start-up, events stored but never processed are processed (a permission reply) or closed (a connect too old to bridge)', async () => {
    sim = await startSim({ provider });
    const nodeId = `replay-${Date.now()}`;
    const customer = `+62813${String(Date.now()).slice(-7)}`;
    const reply = permissionReplyEvent(sim, customer, { response: 'accept', is_permanent: true, response_source: 'user_action' });
    const oldWacid = newWacid();
    const oldConnect = connectEvent(sim, oldWacid, Date.now() - 120_000);
    // What a bridge killed right after storing them (after its 200 to the provider) leaves behind.
    const db = connectDatabase(infra.databaseUrl);
    try {
      for (const [ev, wacid, ageS] of [[reply, null, 5], [oldConnect, oldWacid, 120]] as const) {
        for (const row of storedRows(sim, ev)) {
          await db.query(
            `INSERT INTO webhook_events (id, type, wacid, received_at, payload, node_id, provider)
             VALUES (:id, :type, :wacid, now() - make_interval(secs => :age), :payload::jsonb, :node, :provider)`,
            { replacements: { ...row, wacid, age: ageS, payload: JSON.stringify(row.payload), node: nodeId, provider: sim.face }, type: QueryTypes.INSERT },
          );
        }
      }
    } finally {
      await db.close();
    }
    await sim.stop();
    sim = null;
    stack = await startStack({ NODE_ID: nodeId, RTPENGINE_DTMF_LOG: '' }, { provider });
    await watch(stack.bridge).whenReplayed();
    const state = await stack.bridge.permissions.check(BUSINESS, customer);
    assert.equal(state.allowed, true, 'the permission reply was acted on at start-up');
    const [closed] = await cdrByWacid(oldWacid);
    assert.ok(closed, 'the old connect has a CDR');
    assert.equal(closed.outcome, 'failed');
    assert.match(closed.error ?? '', /not processed before the bridge restarted/);
    assert.deepEqual(stack.sim.requestsFor(oldWacid).map((r) => r.op), ['reject'], 'WhatsApp was told: rejected, never pre-accepted');
    const pending = await testDb().query<{ n: string }>(
      'SELECT count(*) AS n FROM webhook_events WHERE node_id = :node AND processed_at IS NULL', { replacements: { node: nodeId }, type: QueryTypes.SELECT });
    assert.equal(Number(pending[0]!.n), 0, 'every stored event is marked processed');
  });

  it('a terminate just before its connect: never bridged (8 of 8 trials), CDR caller_hangup', async () => {
    stack = await startStack({ RTPENGINE_DTMF_LOG: '' }, { provider });
    for (let i = 0; i < 8; i++) {
      const wacid = newWacid();
      // The terminate is answered (stored) but its processing may still be in flight when the connect comes.
      assert.equal(await stack.sim.deliver(terminateEvent(stack.sim, wacid)), 200);
      assert.equal(await stack.sim.deliver(connectEvent(stack.sim, wacid)), 200);
      const s = stack;
      const id: string = await whenEnded(s.bridge, wacid);
      await s.bridge.calls.whenIdle();
      const row: CallRecord | null = await rows().CallRecord.findByPk(id);
      assert.equal(row?.outcome, 'caller_hangup', `trial ${i}`);
      assert.deepEqual(stack.sim.requestsFor(wacid), [], `trial ${i}: nothing sent to ${label}`);
      const timeline = (await stack.bridge.cdr.events(id)).map((e) => e.type);
      assert.ok(!timeline.includes('invite_sent'), `trial ${i}: no INVITE to the PBX (${timeline.join(', ')})`);
    }
  });

  it('after a restart, a repeated connect for the same wacid with a new event id is not bridged again', async () => {
    stack = await startStack({ RTPENGINE_DTMF_LOG: '' }, { provider });
    const sim1 = stack.sim;
    const wacid = newWacid();
    await sim1.userCalls(cannedWaUser, { wacid });
    await whenEnded(stack.bridge, wacid); // PBX_TARGET unreachable: the call fails and is rejected
    assert.ok(sim1.requestsFor(wacid).some((r) => r.op === 'pre_accept'), 'the first connect was bridged');
    await stack.stop();
    stack = await startStack({ RTPENGINE_DTMF_LOG: '' }, { provider });
    // A new event id: YCloud's is its own; Meta's carries the event's second, so a later one.
    const again = connectEvent(stack.sim, wacid, Date.now() + 1000);
    const processed = watch(stack.bridge).whenProcessed(eventId(stack.sim, again));
    assert.equal(await stack.sim.deliver(again), 200);
    await processed;
    await stack.bridge.calls.whenIdle();
    assert.deepEqual(stack.sim.requestsFor(wacid), [], `nothing was sent to ${label} for the repeat`);
    assert.equal((await cdrByWacid(wacid)).length, 1, 'still one CDR');
  });

  it('a connect redelivered while its first delivery is still being processed is bridged once', async () => {
    stack = await startStack({ RTPENGINE_DTMF_LOG: '' }, { provider });
    const wacid = newWacid();
    const ev = connectEvent(stack.sim, wacid);
    const statuses = await Promise.all([stack.sim.deliver(ev), stack.sim.deliver(ev), stack.sim.deliver(ev)]);
    assert.deepEqual(statuses, [200, 200, 200]);
    await whenEnded(stack.bridge, wacid);
    await stack.bridge.calls.whenIdle();
    assert.equal(stack.sim.requestsFor(wacid).filter((r) => r.op === 'pre_accept').length, 1, 'one pre-accept');
    assert.equal((await cdrByWacid(wacid)).length, 1, 'one CDR');
  });
}

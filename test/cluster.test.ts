import assert from 'node:assert/strict';
import { Bridge } from '../src/app';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { bridgeEnv, forEachProvider, ProviderName, startSim } from './harness/bridge';
import { BridgeProcess } from './harness/bridge-process';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { HttpBalancer } from './harness/http-balancer';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { freePort } from './harness/processes';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, SippRun, startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { ProviderSim } from './harness/ycloud-sim';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';
const CUSTOMER = '+6281361905133';

/**
 * Two bridge nodes sharing Postgres and rtpengine, each with its own drachtio-server as in
 * production, behind a round-robin HTTP balancer: webhooks land on either node and reach the one that has the call (Postgres
 * LISTEN/NOTIFY); when a node dies, the survivor ends its calls and closes their CDRs.
 */
describe('several bridge nodes', function () {
  this.timeout(60000);
  forEachProvider((provider) => severalNodes(provider));
});

function severalNodes(provider: ProviderName): void {
  const label = provider === 'meta' ? 'Meta' : 'YCloud';
  let sim: ProviderSim;
  let balancer: HttpBalancer | null = null;
  const nodes: Bridge[] = [];
  let child: BridgeProcess | null = null;
  /** The second node's own drachtio-server (the first uses the run's). */
  let drachtioB: DrachtioServer | null = null;
  const sipps: SippRun[] = [];
  const users: WaUser[] = [];
  const phones: RtpPhone[] = [];
  let seq = 0;

  before(function () {
    if (!infra.drachtio) this.skip(); // the run already said why, loudly, once
  });

  beforeEach(async () => {
    sim = await startSim({ provider });
  });

  afterEach(async () => {
    for (const u of users.splice(0)) u.close();
    for (const p of phones.splice(0)) p.stop();
    for (const s of sipps.splice(0)) await s.proc.stop();
    await child?.stop();
    child = null;
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
    await drachtioB?.proc.stop();
    drachtioB = null;
    await balancer?.stop();
    balancer = null;
    await sim.stop();
  });

  const nodeEnv = (env: Record<string, string>) => bridgeEnv(sim, {
    NODE_ID: `cluster-${process.pid}-${++seq}`, RTPENGINE_DTMF_LOG: '', SIP_TRUSTED_SOURCES: '127.0.0.0/8',
    WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', CLUSTER_HEARTBEAT_MS: '300', CLUSTER_NODE_TIMEOUT_MS: '1500', ...env,
  });

  /** A node on the run's drachtio-server, or (`own`) on a drachtio-server of its own. */
  async function startNode(env: Record<string, string>, own = false): Promise<Bridge> {
    if (own) {
      drachtioB = await startDrachtio(findDrachtio()!);
      env = { DRACHTIO_PORT: String(drachtioB.adminPort), DRACHTIO_SECRET: drachtioB.secret, ...env };
    }
    const config = loadConfig(nodeEnv(env));
    const b = new Bridge(config, createLogger(config.logLevel));
    nodes.push(b);
    await b.start({ sipWaitMs: 5000 });
    return b;
  }

  async function agentPhone(): Promise<{ uri: string; phone: RtpPhone; sipp: SippRun }> {
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    const sipp = await startSippUas('uas-answer.xml', { rtpPort: await phone.start() });
    sipps.push(sipp);
    return { uri: sipp.uri, phone, sipp };
  }

  async function cdr(wacid: string): Promise<CallRecord> {
    for (;;) {
      const row = await rows().CallRecord.findOne({ where: { wacid } });
      if (row?.ended_at) return row;
      await new Promise((r) => setTimeout(r, 100)); // polled: the node that ends it may be another process
    }
  }

  // Webhooks routed between live nodes run with YCloud only: what runs for both providers here is a
  // call surviving the crash of its node (the routing is the same code for every provider).
  if (provider === 'ycloud') {
    it('webhooks through a round-robin balancer reach the node with the call: inbound calls end cleanly whichever node gets the terminate', async () => {
      const agent = await agentPhone();
      const a = await startNode({ PBX_TARGET: agent.uri });
      const b = await startNode({ PBX_TARGET: agent.uri }, true);
      balancer = new HttpBalancer([() => a.httpPort, () => b.httpPort]);
      sim.webhookUrl = `${await balancer.start()}/webhooks/${sim.face}`;
      const user = new WaUser(USER_TONE, AGENT_TONE);
      users.push(user);
      const { wacid } = await sim.userCalls(user, { to: BUSINESS }); // lands on A (first in turn)
      await user.heard.whenHeard(10);
      await agent.phone.heard.whenHeard(10);
      assert.equal(a.calls.active + b.calls.active, 1);
      const owner = a.calls.active === 1 ? a : b;
      await sim.userHangsUp(wacid); // lands on B: it has no such call and tells the others
      assert.equal(await agent.sipp.done, 0, `the PBX got its BYE:\n${agent.sipp.proc.output.slice(-1000)}`);
      const row = await cdr(wacid);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      assert.equal(row.node_id, owner.config.nodeId);
      assert.deepEqual(balancer.hits, [1, 1], 'one webhook on each node');
    });

    it("an agent's call out: its connect and status webhooks reach the node that took the INVITE, whichever gets them", async () => {
      const a = await startNode({});
      const b = await startNode({}, true);
      balancer = new HttpBalancer([() => a.httpPort, () => b.httpPort]);
      sim.webhookUrl = `${await balancer.start()}/webhooks/${sim.face}`;
      await grantPermanentPermission(a.permissions, BUSINESS, CUSTOMER);
      const user = new WaUser(USER_TONE, AGENT_TONE);
      users.push(user);
      const phone = new RtpPhone(AGENT_TONE, USER_TONE);
      phones.push(phone);
      const rtpPort = await phone.start();
      sim.outboundScript = sim.answeredBy(user);
      // The PBX sends the agent's INVITE to node A (its drachtio-server); the webhooks land on both.
      const sipp = await runSippUac('uac-call-hangup-any-ringing.xml', { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
      sipps.push(sipp);
      await user.heard.whenHeard(10);
      await phone.heard.whenHeard(10);
      assert.equal(await sipp.done, 0, `the agent's call went through:\n${sipp.proc.output.slice(-1000)}`);
      const connect = sim.requests.find((r) => r.op === 'connect');
      assert.ok(connect);
      const wacid = (await rows().CallRecord.findOne({ where: { direction: 'outbound', customer_number: CUSTOMER }, order: [['offered_at', 'DESC']] }))!.wacid!;
      const row = await cdr(wacid);
      assert.equal(row.outcome, 'answered');
      assert.ok(balancer.hits.every((n) => n > 0), `webhooks landed on both nodes: ${balancer.hits.join('/')}`);
    });
  }

  it(`a node killed mid-call: the survivor ends its call at ${label} and on the PBX, and closes its CDR`, async () => {
    const agent = await agentPhone();
    const survivor = await startNode({ PBX_TARGET: agent.uri }, true);
    const httpPort = await freePort('tcp');
    child = new BridgeProcess(nodeEnv({ PBX_TARGET: agent.uri, HTTP_PORT: String(httpPort), LOG_LEVEL: 'info' }));
    await child.started();
    await child.proc.waitFor(/connected to drachtio-server/, 10000);
    sim.webhookUrl = `http://127.0.0.1:${httpPort}/webhooks/${sim.face}`;
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    const { wacid } = await sim.userCalls(user, { to: BUSINESS });
    await user.heard.whenHeard(10);
    await agent.phone.heard.whenHeard(10);
    const terminated = sim.waitForRequest('terminate', wacid);
    await child.signal('SIGKILL');
    child = null;
    await terminated;
    assert.equal(await agent.sipp.done, 0, `the PBX got its BYE:\n${agent.sipp.proc.output.slice(-1000)}`);
    const row = await cdr(wacid);
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', /bridge node .* stopped while the call was in progress/);
    const recovered = await rows().CallEvent.findOne({ where: { call_id: row.id, type: 'recovered' } });
    assert.equal((recovered?.detail as { by?: string } | undefined)?.by, survivor.config.nodeId);
  });
}

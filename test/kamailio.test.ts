import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bridge } from '../src/app';
import { CallRecord } from '../src/cdr/models';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { bridgeEnv, startSim } from './harness/bridge';
import { Asterisk, AsteriskBinary, findAsterisks, SAMPLE_USERNAMES } from './harness/asterisk';
import { BridgeProcess } from './harness/bridge-process';
import { rows } from './harness/db-rows';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { findKamailio, Kamailio } from './harness/kamailio';
import { grantPermanentPermission } from './harness/permissions';
import { freePort } from './harness/processes';
import { parsePromText, sampleSum } from './harness/prom-text';
import { header, RawSip, token } from './harness/raw-sip';
import { RtpPhone } from './harness/rtp-phone';
import { refusalScenario, runSippUac, SippRun } from './harness/sipp';
import { until, within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { ProviderSim, SimOutboundCall } from './harness/ycloud-sim';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';
/** The number the Asterisk sample's dialplan calls from (its WA_BUSINESS). */
const ASTERISK_BUSINESS = '+14155550100';
const CUSTOMER = '+6281361905133';
/** The PBX (SIPp) sends from here; Kamailio and each node's drachtio-server have addresses of their own. */
const PBX_IP = '127.0.0.1';
const KAMAILIO_IP = '127.0.0.10';
const NODE_IPS = { A: '127.0.0.11', B: '127.0.0.12' } as const;
type NodeName = keyof typeof NODE_IPS;
/** The digest the PBX answers the nodes' challenges with (SIP_AUTH_* on every node). */
const AUTH = { username: 'pbx', password: 'kamailio-lab-secret' };

interface Node {
  name: NodeName;
  nodeId: string;
  drachtio: DrachtioServer;
  /** In this process, or (`child`) a bridge process of its own that a test can SIGKILL. */
  bridge: Bridge | null;
  child: BridgeProcess | null;
  httpPort: number;
}

/** One agent's call as the PBX saw it: its CDR and SIPp's SIP messages. */
interface CallSeen { row: CallRecord; sipp: SipTrace }

/**
 * Kamailio (config/kamailio/kamailio.cfg, the sample, placeholders filled) in front of two bridge
 * nodes, each with its own drachtio-server on its own loopback address, sharing Postgres, rtpengine
 * and the provider simulator. The PBX (SIPp, answering the nodes' digest challenges; its agent's phone
 * an RtpPhone) sends agents' calls to Kamailio only, as docs/cluster.md describes.
 */
describe('Kamailio in front of two bridge nodes', function () {
  this.timeout(120000);
  let sim: ProviderSim;
  let kamailio: Kamailio | null = null;
  const nodes: Node[] = [];
  const users: WaUser[] = [];
  const phones: RtpPhone[] = [];
  const sipps: SippRun[] = [];
  const raws: RawSip[] = [];
  let pbx: Asterisk | null = null;
  let dir = '';
  let seq = 0;

  before(function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
    if (!findKamailio()) {
      console.log('\n!!! KAMAILIO TESTS SKIPPED: kamailio not found (set KAMAILIO_BIN or install Debian\'s `kamailio` package) !!!\n');
      return this.skip();
    }
  });

  beforeEach(async () => {
    sim = await startSim();
    sim.on('script-error', (err: unknown) => console.log(`the simulator's WhatsApp user failed: ${String(err)}`));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-kamailio-test-'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && kamailio) console.log(`\n--- Kamailio's log (end):\n${kamailio.output.slice(-6000)}`);
    for (const u of users.splice(0)) u.close();
    for (const p of phones.splice(0)) p.stop();
    for (const r of raws.splice(0)) r.close();
    for (const s of sipps.splice(0)) await s.proc.stop();
    await pbx?.stop();
    pbx = null;
    await kamailio?.stop();
    kamailio = null;
    for (const n of nodes.splice(0)) {
      await n.child?.stop();
      await n.bridge?.stop();
      await n.drachtio.proc.stop();
    }
    await sim.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const nodeEnv = (nodeId: string, d: DrachtioServer, env: Record<string, string> = {}) => bridgeEnv(sim, {
    NODE_ID: nodeId, RTPENGINE_DTMF_LOG: '', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831',
    DRACHTIO_PORT: String(d.adminPort), DRACHTIO_SECRET: d.secret,
    // The nodes see every agent's INVITE coming from Kamailio: only its address is trusted.
    SIP_TRUSTED_SOURCES: KAMAILIO_IP, SIP_AUTH_USERNAME: AUTH.username, SIP_AUTH_PASSWORD: AUTH.password,
    CLUSTER_HEARTBEAT_MS: '300', ...env,
  });

  /** A bridge node on a drachtio-server of its own at NODE_IPS[name]; `child`: in a process of its own. */
  async function startNode(name: NodeName, o: { child?: boolean; env?: Record<string, string> } = {}): Promise<Node> {
    const drachtio = await startDrachtio(findDrachtio()!, { sipHost: NODE_IPS[name] });
    const nodeId = `kamailio-${process.pid}-${++seq}-${name}`;
    const node: Node = { name, nodeId, drachtio, bridge: null, child: null, httpPort: 0 };
    nodes.push(node);
    if (o.child) {
      node.httpPort = await freePort('tcp');
      node.child = new BridgeProcess(nodeEnv(nodeId, drachtio, { HTTP_PORT: String(node.httpPort), LOG_LEVEL: 'info', ...o.env }));
      await node.child.started();
      await node.child.proc.waitFor(/connected to drachtio-server/, 10000);
    } else {
      const config = loadConfig(nodeEnv(nodeId, drachtio, o.env));
      node.bridge = new Bridge(config, createLogger(config.logLevel));
      await node.bridge.start({ sipWaitMs: 5000 });
      node.httpPort = node.bridge.httpPort;
    }
    return node;
  }

  /** Nodes A and B (B in its own process when asked), Kamailio in front; webhooks go to `webhooksTo`. */
  async function startCluster(o: { pingIntervalS?: number; childB?: boolean; webhooksTo?: NodeName; env?: Record<string, string> } = {}): Promise<{ a: Node; b: Node; k: Kamailio }> {
    const a = await startNode('A', { env: o.env });
    const b = await startNode('B', { child: o.childB, env: o.env });
    await grantPermanentPermission(a.bridge!.permissions, BUSINESS, CUSTOMER);
    sim.webhookUrl = `http://127.0.0.1:${(o.webhooksTo === 'B' ? b : a).httpPort}/webhooks/${sim.face}`;
    kamailio = await new Kamailio(findKamailio()!, {
      ip: KAMAILIO_IP, port: await freePort('udp'), pbxSources: [`${PBX_IP}/32`],
      nodes: [a, b].map((n) => ({ host: n.drachtio.sipHost, port: n.drachtio.sipPort })),
    }, { pingIntervalS: o.pingIntervalS }).start();
    return { a, b, k: kamailio };
  }

  const sipUri = (n: Node) => `sip:${n.drachtio.sipHost}:${n.drachtio.sipPort}`;

  /**
   * An agent's call through Kamailio, answered on WhatsApp, with audio both ways; then the agent hangs
   * up (`agent`: the PBX's BYE goes to the node) or the WhatsApp user does (`user`: the node's BYE
   * goes to the PBX). Resolves once the call's CDR is closed.
   */
  async function agentCall(hangup: 'agent' | 'user', tag: string): Promise<CallSeen> {
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    phones.push(phone);
    const rtpPort = await phone.start();
    const user = new WaUser(USER_TONE, AGENT_TONE);
    users.push(user);
    const heard = () => Promise.all([user.heard.whenHeard(10), phone.heard.whenHeard(10)]);
    sim.outboundScript = hangup === 'agent' ? sim.answeredBy(user) : async (call) => {
      await sim.answeredBy(user)(call);
      await heard();
      await sim.deliver(sim.outboundTerminate(call, 'COMPLETED'));
    };
    const callId = `kam-${tag}-${++seq}`;
    const trace = path.join(dir, `${callId}.msg`);
    const sipp = await runSippUac(hangup === 'agent' ? 'uac-auth-routed-hangup.xml' : 'uac-auth-routed-wait-bye.xml', {
      target: kamailio!.address, number: CUSTOMER, rtpPort, auth: AUTH,
      // The agent talks for 5 s (-d) before hanging up: long enough to hear both tones on a busy machine.
      extraArgs: ['-cid_str', `${callId}-%u@%s`, '-trace_msg', '-message_file', trace, ...(hangup === 'agent' ? ['-d', '5000'] : [])],
    });
    sipps.push(sipp);
    await within(heard(), 30000, () => `audio both ways on call ${callId} (SIPp so far:\n${sipp.proc.output.slice(-1500)})`);
    const code = await within(sipp.done, 30000, () => `the end of call ${callId}`);
    assert.equal(code, 0, `SIPp's call ${callId} went through Kamailio:\n${sipp.proc.output.slice(-1500)}\n${tail(trace)}`);
    const sipCallId = `${callId}-1@${PBX_IP}`;
    const row = await until(`call ${sipCallId}'s CDR closed`, async () => {
      const r = await rows().CallRecord.findOne({ where: { sip_call_id: sipCallId } });
      return r?.ended_at ? r : null;
    }, 15000);
    return { row, sipp: readSippTrace(trace) };
  }

  it('spreads agents\' calls over both nodes in turn, with audio both ways; in-dialog requests of both sides go through Kamailio to the one that has the call', async () => {
    const { a, b, k } = await startCluster();
    // The nodes trust Kamailio, not the PBX: the PBX calling a node directly is refused.
    const direct = await runSippUac(await refusalScenario(403), { target: `${a.drachtio.sipHost}:${a.drachtio.sipPort}`, number: CUSTOMER });
    sipps.push(direct);
    assert.equal(await within(direct.done, 15000, () => 'the 403 from a node called directly'), 0, `a node called directly by the PBX answers 403:\n${direct.proc.output.slice(-1500)}`);

    const from = k.output.length;
    const calls: CallSeen[] = [];
    for (const hangup of ['agent', 'user', 'agent', 'user'] as const) calls.push(await agentCall(hangup, 'rr'));

    const byNode = calls.map((c) => (c.row.node_id === a.nodeId ? 'A' : c.row.node_id === b.nodeId ? 'B' : c.row.node_id));
    assert.deepEqual([...byNode].sort(), ['A', 'A', 'B', 'B'], `two calls on each node: ${byNode.join(',')}`);
    for (let i = 1; i < byNode.length; i++) assert.notEqual(byNode[i], byNode[i - 1], `round robin: each call on the other node (${byNode.join(',')})`);
    assert.deepEqual(k.linesMatching(/failover|did not answer/, from), [], 'no node failed');
    // Each call's INVITE was challenged by a node and its credentials accepted by a node (any node
    // accepts another's nonce): four challenges between them, two calls accepted on each.
    const invites = async (n: Node, result: string) => sampleSum(parsePromText(await n.bridge!.metrics.registry.metrics()), 'wasb_sip_invites_received_total', { result });
    assert.equal(await invites(a, 'challenged') + await invites(b, 'challenged'), 4, 'one challenge per call');
    assert.deepEqual([await invites(a, 'accepted'), await invites(b, 'accepted')], [2, 2], 'two calls accepted on each node');
    for (const [i, c] of calls.entries()) {
      const hangup = i % 2 === 0 ? 'agent' : 'user';
      assert.equal(c.row.outcome, 'answered');
      assert.equal(c.row.hangup_by, hangup === 'agent' ? 'pbx' : 'whatsapp');
      // The PBX answered a digest challenge from a node, through Kamailio.
      assert.equal(c.sipp.received.filter((m) => m.status === 401).length, 1, 'one challenge');
      const ok = c.sipp.received.find((m) => m.status === 200 && /INVITE/.test(m.header('CSeq')));
      assert.ok(ok, 'the 200 to the INVITE');
      assert.match(ok.header('Record-Route'), new RegExp(`sip:${k.address.replace(/\./g, '\\.')};lr`), 'Kamailio record-routes the dialog');
      const ack = c.sipp.sent.find((m) => m.method === 'ACK' && /^2 ACK/.test(m.header('CSeq')));
      assert.match(ack?.header('Route') ?? '', new RegExp(k.address.replace(/\./g, '\\.')), 'the PBX\'s ACK goes through Kamailio');
      if (hangup === 'agent') {
        const bye = c.sipp.sent.find((m) => m.method === 'BYE');
        assert.match(bye?.header('Route') ?? '', new RegExp(k.address.replace(/\./g, '\\.')), 'the PBX\'s BYE goes through Kamailio');
        assert.ok(c.sipp.received.some((m) => m.status === 200 && /BYE/.test(m.header('CSeq'))), 'the node that has the call answered the BYE');
      } else {
        const bye = c.sipp.received.find((m) => m.method === 'BYE');
        assert.ok(bye, 'the node\'s BYE reached the PBX');
        assert.match(bye.header('Via'), new RegExp(`^SIP/2.0/UDP ${k.address.replace(/\./g, '\\.')}`), 'the node\'s BYE came through Kamailio (its Via on top)');
        assert.equal(bye.headers('Via').length, 2, 'Kamailio\'s Via and the node\'s');
      }
    }
  });

  it('a slow provider: the node\'s 100 Trying holds the INVITE on it past fr_timer, so no second node is tried (one WhatsApp call)', async () => {
    const { k } = await startCluster();
    // WhatsApp's connect takes 3 s, longer than Kamailio's fr_timer (2 s) for a first answer.
    sim.beforeConnectResponse = () => new Promise((r) => setTimeout(r, 3000));
    const from = k.output.length;
    const c = await agentCall('user', 'slow');
    assert.equal(c.row.outcome, 'answered');
    assert.deepEqual(k.linesMatching(/failover|did not answer/, from), [], 'Kamailio never tried another node');
    assert.equal(sim.requests.filter((r) => r.op === 'connect').length, 1, 'one WhatsApp call placed');
  });

  it('a node killed with SIGKILL (its drachtio-server up, answering 503): its turn goes to the other node, and the calls succeed', async () => {
    // No probe in this test (interval 1 h): what moves the call is the INVITE's own 503.
    const { a, b, k } = await startCluster({ pingIntervalS: 3600, childB: true });
    await b.child!.signal('SIGKILL');
    b.child = null;
    const from = k.output.length;
    const calls = [await agentCall('user', 'killed'), await agentCall('user', 'killed')];
    for (const c of calls) {
      assert.equal(c.row.node_id, a.nodeId, 'the survivor took the call');
      assert.equal(c.row.outcome, 'answered');
    }
    const failovers = k.linesMatching(new RegExp(`failover: bridge node ${sipUri(b)} answered 503`), from);
    assert.ok(failovers.length >= 1, `Kamailio moved B's turn to A on its drachtio-server's 503:\n${k.linesMatching(/bridge node/, from).join('\n')}`);
    assert.ok(calls.every((c) => !c.sipp.received.some((m) => m.status === 503)), 'the PBX never saw the 503');
  });

  it('a node whose host is lost (bridge and drachtio-server gone): the INVITE times out there, the node is marked down, and the call goes to the other node', async () => {
    const { a, b, k } = await startCluster({ pingIntervalS: 3600 });
    b.drachtio.proc.child.kill('SIGKILL');
    await b.drachtio.proc.exited;
    await b.bridge!.stop();
    b.bridge = null;
    const from = k.output.length;
    const calls = [await agentCall('user', 'lost'), await agentCall('user', 'lost'), await agentCall('user', 'lost')];
    for (const c of calls) {
      assert.equal(c.row.node_id, a.nodeId, 'the survivor took the call');
      assert.equal(c.row.outcome, 'answered');
    }
    // One INVITE waited for fr_timer; the node was marked down then, so no later INVITE went there.
    assert.equal(k.linesMatching(new RegExp(`bridge node ${sipUri(b)} did not answer the INVITE`), from).length, 1,
      `exactly one INVITE timed out on B:\n${k.linesMatching(/bridge node/, from).join('\n')}`);
    assert.equal(k.linesMatching(new RegExp(`bridge node down: ${sipUri(b)}$`), from).length, 1, 'B marked down');
  });

  it('a draining node (503 with Retry-After) sends its calls to the other node', async () => {
    const { a, b, k } = await startCluster({ pingIntervalS: 3600, webhooksTo: 'B' });
    await a.bridge!.drain(0);
    const from = k.output.length;
    const calls = [await agentCall('user', 'drain'), await agentCall('agent', 'drain')];
    for (const c of calls) {
      assert.equal(c.row.node_id, b.nodeId, 'the node that is not draining took the call');
      assert.equal(c.row.outcome, 'answered');
    }
    assert.ok(k.linesMatching(new RegExp(`failover: bridge node ${sipUri(a)} answered 503`), from).length >= 1,
      `the draining node's 503 moved the call:\n${k.linesMatching(/bridge node/, from).join('\n')}`);
  });

  it('a 503 carrying the call\'s own answer (Q.850 cause 41: the provider could not place the WhatsApp call) goes to the PBX: no other node asks the provider again', async () => {
    const { k } = await startCluster({ pingIntervalS: 3600 });
    sim.failNext('connect', { status: 500, message: 'simulated provider failure' });
    const from = k.output.length;
    // The routed PBX's scenario, expecting 503 with that Reason for its authenticated INVITE.
    const src = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'sipp', 'uac-auth-refused.xml'), 'utf8');
    const expect503 = src.replace('<recv response="403"/>', '<recv response="503"><action><ereg regexp="Q.850;cause=41" search_in="hdr" header="Reason:" check_it="true" assign_to="reason"/></action></recv>')
      .replace('</scenario>', '  <Reference variables="reason"/>\n</scenario>');
    assert.notEqual(expect503, src);
    const scenario = path.join(dir, 'uac-auth-expect-503.xml');
    fs.writeFileSync(scenario, expect503);
    const sipp = await runSippUac(scenario, { target: k.address, number: CUSTOMER, auth: AUTH, extraArgs: ['-trace_msg', '-message_file', path.join(dir, 'expect-503.msg')] });
    sipps.push(sipp);
    assert.equal(await within(sipp.done, 20000, () => 'the 503'), 0, `the PBX got the node's 503 with its Reason:\n${sipp.proc.output.slice(-1500)}`);
    assert.equal(sim.requests.filter((r) => r.op === 'connect').length, 1, 'the provider was asked once');
    assert.deepEqual(k.linesMatching(/failover/, from), [], 'no other node was tried');
    assert.equal(k.linesMatching(/the call's own answer, not tried elsewhere/, from).length, 1);
  });

  for (const how of ['draining', 'dead'] as const) {
    it(`OPTIONS probing takes a ${how} node out of rotation before any call is sent to it`, async () => {
      const { a, b, k } = await startCluster({ pingIntervalS: 1 });
      const mark = k.output.length;
      if (how === 'draining') {
        await b.bridge!.drain(0);
      } else {
        b.drachtio.proc.child.kill('SIGKILL');
        await b.drachtio.proc.exited;
      }
      await k.waitForLog(new RegExp(`bridge node down: ${sipUri(b)}`), 15000, mark);
      const from = k.output.length;
      const calls = [await agentCall('user', `probe-${how}`), await agentCall('user', `probe-${how}`)];
      for (const c of calls) assert.equal(c.row.node_id, a.nodeId, 'the live node took the call');
      assert.deepEqual(k.linesMatching(/failover|did not answer/, from), [], 'no INVITE was sent to the node that is down');
    });
  }

  /** The PBX-to-bridge digest password the Asterisk sample and the nodes share (username `asterisk`). */
  const ASTERISK_SECRET = 'p2b-kamailio-lab';

  /**
   * A real Asterisk with the config/asterisk samples, its trunk (BRIDGE_IP/BRIDGE_SIP_PORT) pointed at
   * Kamailio: it never learns the nodes' addresses. Resolves once its qualify sees the trunk up.
   */
  async function startAsteriskBehind(bin: string, k: Kamailio, a: Node): Promise<Asterisk> {
    await grantPermanentPermission(a.bridge!.permissions, ASTERISK_BUSINESS, CUSTOMER);
    pbx = await new Asterisk(bin, {
      values: { bridgeIp: KAMAILIO_IP, bridgeSipPort: Number(k.address.split(':')[1]), bridgeToPbxSecret: 'b2p-unused', pbxToBridgeSecret: ASTERISK_SECRET, businessNumber: ASTERISK_BUSINESS },
      agents: 'Local/agent@wa-lab', lab: [],
    }).start();
    await pbx.bridgeReachable(); // Asterisk's qualify: Kamailio answers 200 while a node is up
    return pbx;
  }

  /** Asterisk's agent dials 9 + the customer; resolves once the WhatsApp user hears the agent's side (an echo of its own tone). */
  async function asteriskAgentCall(): Promise<SimOutboundCall> {
    const user = new WaUser(USER_TONE, USER_TONE);
    users.push(user);
    const placed = new Promise<SimOutboundCall>((resolve) => {
      const answers = sim.answeredBy(user, 300);
      sim.outboundScript = async (c) => {
        resolve(c);
        await answers(c);
      };
    });
    await pbx!.originate({ channel: `Local/9${CUSTOMER.slice(1)}@agents`, application: 'Echo', callerId: '"Agent 201" <201>' });
    const call = await within(placed, 20000, () => `a WhatsApp call placed for Asterisk's agent:\n${pbx!.logText().slice(-3000)}`);
    await within(user.heard.whenHeard(50), 20000, () => `the user hears the agent's side (echo) through Asterisk and Kamailio:\n${pbx!.logText().slice(-3000)}`);
    return call;
  }

  const closedRow = (wacid: string) => until(`call ${wacid}'s CDR closed`, async () => {
    const r = await rows().CallRecord.findOne({ where: { wacid } });
    return r?.ended_at ? r : null;
  }, 20000);

  // The real-Asterisk tests run once per Asterisk found (findAsterisks: `asterisk`, each `asterisk-<N>` on PATH).
  const found = findAsterisks();
  const asterisks: AsteriskBinary[] = found.length ? found
    : [{ bin: '', version: null, missing: 'asterisk not found (set ASTERISK_BIN or ASTERISK_BINS, or put `asterisk` / `asterisk-<N>` on PATH)' }];
  const asteriskBin = (a: AsteriskBinary, ctx: Mocha.Context): string => {
    if (!a.missing) return a.bin;
    console.log(`\n!!! KAMAILIO + ASTERISK TEST SKIPPED: ${a.missing} !!!\n`);
    return ctx.skip();
  };

  for (const asteriskRun of asterisks) {
    it(`a real ${asteriskRun.version ?? 'Asterisk'} (config/asterisk samples, its trunk pointed at Kamailio): its qualify, digest and agents' calls go through Kamailio to both nodes, audio both ways, BYEs both ways`, async function () {
      const bin = asteriskBin(asteriskRun, this);
      const { a, b, k } = await startCluster({ env: { SIP_AUTH_USERNAME: SAMPLE_USERNAMES.pbxToBridge, SIP_AUTH_PASSWORD: ASTERISK_SECRET } });
      const ast = await startAsteriskBehind(bin, k, a);
      const from = k.output.length;
      const wacids: string[] = [];
      for (const hangup of ['pbx', 'whatsapp'] as const) {
        const call = await asteriskAgentCall();
        if (hangup === 'pbx') await ast.cli('channel request hangup all');
        else await sim.deliver(sim.outboundTerminate(call, 'COMPLETED'));
        const row = await closedRow(call.wacid);
        assert.equal(row.outcome, 'answered');
        assert.equal(row.hangup_by, hangup);
        assert.equal(row.business_number, ASTERISK_BUSINESS);
        wacids.push(call.wacid);
      }
      const rowsByCall = await Promise.all(wacids.map((w) => rows().CallRecord.findOne({ where: { wacid: w } })));
      assert.deepEqual(rowsByCall.map((r) => r!.node_id).sort(), [a.nodeId, b.nodeId].sort(), 'one call on each node');
      assert.deepEqual(k.linesMatching(/failover|did not answer/, from), [], 'no node failed');

      const sip = ast.sipMessages();
      const kam = k.address.replace(/\./g, '\\.');
      const invites = sip.filter((m) => m.dir === 'tx' && m.text.startsWith(`INVITE sip:${CUSTOMER}@${k.address}`));
      assert.equal(invites.length, 4, 'each call: the INVITE, then the same INVITE with credentials, all to Kamailio');
      assert.equal(sip.filter((m) => m.dir === 'rx' && /^SIP\/2\.0 401 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text)).length, 2, 'a node\'s challenge per call, through Kamailio');
      const oks = sip.filter((m) => m.dir === 'rx' && /^SIP\/2\.0 200 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text));
      assert.ok(oks.length >= 2 && oks.every((m) => new RegExp(`^Record-Route: <sip:${kam};lr=on>`, 'mi').test(m.text)), 'each 200 carries Kamailio\'s Record-Route');
      // The ACKs of the 200s (to the node's Contact; the ACKs of the 401s end at Kamailio).
      const acks = sip.filter((m) => m.dir === 'tx' && /^ACK /.test(m.text) && !m.text.startsWith(`ACK sip:${CUSTOMER}@${k.address}`));
      assert.equal(acks.length, 2, `two ACKs of 200s:\n${acks.map((m) => m.text.split('\n')[0]).join('\n')}`);
      for (const ack of acks) assert.match(ack.text, new RegExp(`^Route: <sip:${kam};lr(=on)?>`, 'mi'), `Asterisk sends its ACK along the route set:\n${ack.text}`);
      const byeOut = sip.find((m) => m.dir === 'tx' && /^BYE /.test(m.text));
      assert.match(byeOut?.text ?? '', new RegExp(`^Route: <sip:${kam};lr(=on)?>`, 'mi'), 'Asterisk\'s BYE goes through Kamailio');
      const byeIn = sip.find((m) => m.dir === 'rx' && /^BYE /.test(m.text));
      assert.match(byeIn?.text ?? '', new RegExp(`^Via: SIP/2\\.0/UDP ${kam};branch=`, 'mi'), 'the node\'s BYE reaches Asterisk through Kamailio');
      const byeAnswers = sip.filter((m) => m.dir === 'tx' && /^SIP\/2\.0 /.test(m.text) && /^CSeq: \d+ BYE/mi.test(m.text)).map((m) => m.text.split('\n')[0]!.trim());
      assert.deepEqual(byeAnswers, ['SIP/2.0 200 OK'], 'Asterisk takes the node\'s BYE from Kamailio\'s address without a challenge (in its dialog)');
      const byeReplies = sip.filter((m) => m.dir === 'rx' && /^SIP\/2\.0 /.test(m.text) && /^CSeq: \d+ BYE/mi.test(m.text)).map((m) => m.text.split('\n')[0]!.trim());
      assert.deepEqual(byeReplies, ['SIP/2.0 200 OK'], 'the node answered Asterisk\'s BYE');
    });

    it(`a node killed mid-call behind Kamailio, with a real ${asteriskRun.version ?? 'Asterisk'}: the survivor ends the call on WhatsApp and on Asterisk (its BYE, in a dialog its drachtio-server never held, relayed by Kamailio)`, async function () {
      const bin = asteriskBin(asteriskRun, this);
      const env = { SIP_AUTH_USERNAME: SAMPLE_USERNAMES.pbxToBridge, SIP_AUTH_PASSWORD: ASTERISK_SECRET, CLUSTER_NODE_TIMEOUT_MS: '1500' };
      const { a, b, k } = await startCluster({ env, childB: true });
      const ast = await startAsteriskBehind(bin, k, a);
      // Calls alternate between the nodes: at most two until one is on B, the node in its own process.
      let onB: SimOutboundCall | null = null;
      for (let i = 0; i < 2 && !onB; i++) {
        const call = await asteriskAgentCall();
        const row = await until('the call\'s CDR', () => rows().CallRecord.findOne({ where: { wacid: call.wacid } }), 10000);
        if (row.node_id === b.nodeId) onB = call;
        else {
          await ast.cli('channel request hangup all');
          await closedRow(call.wacid);
        }
      }
      assert.ok(onB, 'one of two calls landed on node B');
      const sipBefore = ast.sipMessages().length;
      const from = k.output.length;
      const terminated = sim.waitForRequest('terminate', onB.wacid);
      await b.child!.signal('SIGKILL');
      b.child = null;
      await within(terminated, 20000, () => 'the survivor ends the call at the provider');
      const row = await closedRow(onB.wacid);
      assert.equal(row.hangup_by, 'bridge');
      assert.match(row.error ?? '', /bridge node .* stopped while the call was in progress/);
      // The survivor's BYE (the stored dialog: Call-ID, tags, Asterisk's Contact and route set) goes to
      // Kamailio as its next hop, without a Route header (drachtio-server drops it): Kamailio relays it.
      const after = () => ast.sipMessages().slice(sipBefore);
      const bye = await until('the survivor\'s BYE at Asterisk', async () => after().find((m) => m.dir === 'rx' && /^BYE /.test(m.text)) ?? null, 15000,
        async () => `${after().map((m) => m.text.split('\n')[0]).join('\n')}\nrecovered: ${JSON.stringify((await rows().CallEvent.findOne({ where: { call_id: row.id, type: 'recovered' } }))?.detail)}\nrecovery: ${JSON.stringify(row.recovery)}`);
      const vias = bye.text.split('\n').filter((l) => /^Via:/i.test(l));
      assert.match(vias[0] ?? '', new RegExp(`^Via: SIP/2\\.0/UDP ${k.address.replace(/\./g, '\\.')};`, 'i'), `through Kamailio:\n${bye.text}`);
      assert.match(vias[1] ?? '', new RegExp(`^Via: SIP/2\\.0/UDP ${NODE_IPS.A.replace(/\./g, '\\.')}:${a.drachtio.sipPort}`, 'i'), `from the survivor:\n${bye.text}`);
      assert.equal(k.linesMatching(/refused/, from).length, 0);
      const answer = await until('Asterisk\'s answer to that BYE', async () => after().find((m) => m.dir === 'tx' && /^SIP\/2\.0 /.test(m.text) && /^CSeq: \d+ BYE/mi.test(m.text)) ?? null, 10000);
      assert.match(answer.text, /^SIP\/2\.0 200 /, `Asterisk takes the survivor's BYE:\n${answer.text}`);
      const recovered = await rows().CallEvent.findOne({ where: { call_id: row.id, type: 'recovered' } });
      assert.equal((recovered?.detail as { by?: string } | undefined)?.by, a.nodeId);
      assert.equal((recovered?.detail as { actions?: { pbx?: string } } | undefined)?.actions?.pbx, 'ok', 'the survivor counts its BYE answered');
      await until('Asterisk has no channel left', async () => /^0 active channels?/m.test(await ast.cli('core show channels count')), 10000,
        async () => ast.cli('core show channels'));
    });
  }

  it('only the PBX may start requests (a node\'s own INVITE and a stranger\'s are refused), in-dialog requests only from the PBX or a node; with no node up the PBX is told 503', async () => {
    // Two nodes that were never started: probing marks both down.
    const k = kamailio = await new Kamailio(findKamailio()!, {
      ip: KAMAILIO_IP, port: await freePort('udp'), pbxSources: [`${PBX_IP}/32`],
      nodes: [{ host: NODE_IPS.A, port: 5060 }, { host: NODE_IPS.B, port: 5060 }],
    }, { pingIntervalS: 1 }).start();
    await k.waitForLog(new RegExp(`bridge node down: sip:${NODE_IPS.A}:5060`), 15000);
    await k.waitForLog(new RegExp(`bridge node down: sip:${NODE_IPS.B}:5060`), 15000);
    const [kHost, kPort] = [KAMAILIO_IP, Number(k.address.split(':')[1])];
    const request = async (fromIp: string, method: string, o: { toTag?: boolean; route?: boolean } = {}) => {
      const raw = await new RawSip(fromIp).start();
      raws.push(raw);
      const uri = method === 'OPTIONS' ? `sip:${k.address}` : `sip:${CUSTOMER}@${o.route ? '127.0.0.99:5060' : k.address}`;
      return raw.request([
        `${method} ${uri} SIP/2.0`, `Via: SIP/2.0/UDP ${fromIp}:${raw.port};branch=${token('z9hG4bK')};rport`,
        `From: <sip:pbx@${fromIp}>;tag=${token()}`, `To: <sip:${CUSTOMER}@${k.address}>${o.toTag ? `;tag=${token()}` : ''}`,
        `Call-ID: ${token('kam-raw-')}`, `CSeq: 1 ${method}`, `Contact: <sip:pbx@${fromIp}:${raw.port}>`, 'Max-Forwards: 70',
        ...(o.route ? [`Route: <sip:${k.address};lr>`] : []), 'Content-Length: 0', '', '',
      ].join('\r\n'), kPort, kHost);
    };
    assert.equal((await request(NODE_IPS.A, 'INVITE')).status, 403, 'a node\'s new INVITE (WhatsApp users\' calls go straight to the PBX)');
    assert.equal((await request('127.0.0.99', 'INVITE')).status, 403, 'a stranger\'s INVITE');
    assert.equal((await request('127.0.0.99', 'BYE', { toTag: true, route: true })).status, 403, 'a stranger\'s in-dialog request (no open relay)');
    const options = await request(PBX_IP, 'OPTIONS');
    assert.equal(options.status, 503, 'the PBX\'s OPTIONS while no node is up');
    assert.equal(header(options, 'retry-after'), '10');
    const invite = await request(PBX_IP, 'INVITE');
    assert.equal(invite.status, 503, 'the PBX\'s INVITE while no node is up');
  });
});

/** A SIP message in SIPp's message file. */
interface TracedMessage {
  method: string | null;
  status: number | null;
  /** The first value of a header (by full name, case-insensitive), or ''. */
  header(name: string): string;
  headers(name: string): string[];
}

interface SipTrace { sent: TracedMessage[]; received: TracedMessage[] }

/** SIPp's -trace_msg file, split into the messages it sent and received. */
function readSippTrace(file: string): SipTrace {
  const trace: SipTrace = { sent: [], received: [] };
  const text = fs.readFileSync(file, 'utf8');
  const blocks = text.split(/^-{10,}[^\n]*\n\S+ message (sent|received)[^\n]*$/m);
  for (let i = 1; i + 1 < blocks.length; i += 2) {
    const lines = blocks[i + 1]!.replace(/\r/g, '').trim().split('\n');
    const start = lines[0] ?? '';
    const fields = lines.slice(1, lines.indexOf('') < 0 ? undefined : lines.indexOf('')).map((l) => {
      const c = l.indexOf(':');
      return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()] as const;
    });
    const values = (name: string) => fields.filter(([k]) => k === name.toLowerCase()).flatMap(([, v]) => v.split(/,(?=\s*SIP\/2\.0\/)/).map((x) => x.trim()));
    const m: TracedMessage = {
      method: /^SIP\/2\.0 /.test(start) ? null : start.split(' ')[0]!,
      status: /^SIP\/2\.0 (\d{3})/.exec(start) ? Number(/^SIP\/2\.0 (\d{3})/.exec(start)![1]) : null,
      header: (name) => values(name)[0] ?? '',
      headers: values,
    };
    (blocks[i] === 'sent' ? trace.sent : trace.received).push(m);
  }
  return trace;
}

function tail(file: string, chars = 4000): string {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').slice(-chars) : '(no SIPp trace)';
}

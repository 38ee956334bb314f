import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rows } from './harness/db-rows';
import { mediaAddresses } from '../src/media/sdp';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { findProgram } from './harness/processes';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, SippRun, startSippUas } from './harness/sipp';
import { SrfPbx } from './harness/srf-pbx';
import { grantPermanentPermission } from './harness/permissions';
import { WaUser } from './harness/wa-user';
import { SimOutboundCall } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';

/** Loopback addresses standing in for a cloud VM behind 1:1 NAT, next to a PBX on a private network. */
const VM_LOCAL = '127.0.0.2'; // the VM's own address: rtpengine binds its WhatsApp-facing side here
const VM_PUBLIC = '127.0.0.3'; // the NAT's public address for the VM: on no interface of the VM
const PBX_FACING = '127.0.0.4'; // the VM's address on the PBX's private network
const PORT_MIN = 37000;
const PORT_MAX = 37199;

/**
 * A 1:1 NAT of the test's own: an nftables table in its private network namespace that sends UDP for
 * one address (and ports) on to another, and back. `open` says loudly why not, where it cannot be.
 */
class TestNat {
  private created = false;

  private constructor(private readonly nft: string, private readonly table: string) {}

  static open(table: string, tests: string): TestNat | null {
    const nft = findProgram('nft', 'NFT_BIN');
    if (!infra.isolated || !nft) {
      console.log(`\n!!! ${tests} SKIPPED: they need the private network namespace (root, unshare) and nftables (${nft ? 'found' : 'nft not found'}) !!!\n`);
      return null;
    }
    return new TestNat(nft, table);
  }

  dnat(daddr: string, ports: string, to: string): void {
    execFileSync(this.nft, ['-f', '-'], {
      input: `table ip ${this.table} {
  chain output { type nat hook output priority -100; ip daddr ${daddr} udp dport ${ports} dnat to ${to}; }
}
`,
    });
    this.created = true;
  }

  close(): void {
    if (this.created) execFileSync(this.nft, ['delete', 'table', 'ip', this.table], { stdio: 'ignore' });
    this.created = false;
  }
}

/** The SDP of the first message in a SIPp message trace that carries one (INVITE or 200 OK). */
function firstSdpIn(traceFile: string, startLine: RegExp): string {
  const text = fs.readFileSync(traceFile, 'utf8');
  const messages = text.split(/^-{5,}.*$/m);
  const msg = messages.find((m) => startLine.test(m) && /\r?\n\r?\nv=0/.test(m));
  assert.ok(msg, `SIPp traced a message matching ${startLine}`);
  return msg.slice(msg.search(/v=0/));
}

/**
 * Media behind 1:1 NAT: rtpengine's WhatsApp-facing interface binds the VM's local address and
 * advertises the public one (`wa/LOCAL!PUBLIC`), its PBX-facing interface is the private address, and
 * the bridge names both in every offer and answer. A real NAT (nftables DNAT in the test's own network
 * namespace) sends what WhatsApp addresses to the public address on to the local one, so audio only
 * flows if WhatsApp was given the public address, and the PBX the private one.
 */
describe('media addresses behind 1:1 NAT', function () {
  this.timeout(60000);
  let rtp: RtpengineInstance | null = null;
  let stack: TestStack | null = null;
  let sipp: SippRun | null = null;
  let user: WaUser | null = null;
  let phone: RtpPhone | null = null;
  let traceDir = '';
  let nat: TestNat | null = null;

  before(async function () {
    if (!infra.drachtio) return this.skip();
    nat = TestNat.open('wasb_one_to_one_nat', 'NAT TESTS');
    if (!nat) return this.skip();
    nat.dnat(VM_PUBLIC, `${PORT_MIN}-${PORT_MAX}`, VM_LOCAL);
    rtp = await startRtpengine({ portMin: PORT_MIN, portMax: PORT_MAX, interfaces: [`wa/${VM_LOCAL}!${VM_PUBLIC}`, `pbx/${PBX_FACING}`] });
  });

  after(async () => {
    await rtp?.proc.stop();
    nat?.close();
  });

  beforeEach(() => {
    traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-nat-'));
  });

  afterEach(async () => {
    user?.close();
    phone?.stop();
    await sipp?.proc.stop();
    await stack?.stop();
    stack = sipp = user = phone = null;
    fs.rmSync(traceDir, { recursive: true, force: true });
  });

  const natEnv = (): Record<string, string> => ({
    RTPENGINE_NG: `${rtp!.ng.host}:${rtp!.ng.port}`,
    RTPENGINE_DTMF_LOG: '',
    PUBLIC_IP: VM_PUBLIC,
  });

  async function eventTypes(s: TestStack, id: string): Promise<string[]> {
    return (await s.bridge.cdr.events(id)).map((e) => e.type);
  }

  it('a WhatsApp user calls in: WhatsApp is given only the public address, the PBX only the private one, and audio flows both ways', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const rtpPort = await phone.start();
    const trace = path.join(traceDir, 'uas.msg');
    sipp = await startSippUas('uas-answer.xml', { rtpPort, extraArgs: ['-trace_msg', '-message_file', trace] });
    stack = await startStack({ ...natEnv(), PBX_TARGET: sipp.uri });
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await stack.sim.userCalls(user);

    const preAccept = await stack.sim.waitForRequest('/calls/preAccept', wacid);
    const waSdp = String(preAccept.body.sdp ?? '');
    assert.deepEqual(mediaAddresses(waSdp), [VM_PUBLIC], `WhatsApp's answer names only the public address:\n${waSdp}`);
    assert.match(waSdp, new RegExp(`a=candidate:\\S+ 1 UDP \\d+ ${VM_PUBLIC.replace(/\./g, '\\.')} \\d+ typ host`, 'i'));

    await user.heard.whenHeard(50);
    await phone.heard.whenHeard(25);
    // The agent's phone heard the caller from the PBX-facing address, and answers there.
    assert.equal(phone.remoteAddress?.address, PBX_FACING);

    await stack.sim.userHangsUp(wacid);
    const id = await whenEnded(stack.bridge, wacid);
    assert.equal(await sipp.done, 0, `SIPp saw the call through:\n${sipp.proc.output.slice(-1500)}`);
    assert.deepEqual(mediaAddresses(firstSdpIn(trace, /INVITE sip:/)), [PBX_FACING], 'the INVITE to the PBX names only the private address');
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    assert.ok(!(await eventTypes(stack, id)).includes('media_address_mismatch'));
  });

  it('an agent calls out: the connect offer names only the public address, the 200 OK to the PBX only the private one, and audio flows both ways', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    await phone.start();
    user = new WaUser(USER_TONE, AGENT_TONE);
    stack = await startStack({ ...natEnv(), SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831' });
    const s = stack;
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    let offer = '';
    const answers = s.sim.answeredBy(user);
    s.sim.outboundScript = async (call: SimOutboundCall) => {
      offer = call.offer;
      await answers(call);
    };
    const trace = path.join(traceDir, 'uac.msg');
    const rtpPort = (phone as unknown as { socket: { address(): { port: number } } }).socket.address().port;
    sipp = await runSippUac('uac-call-hangup.xml', {
      target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort, extraArgs: ['-trace_msg', '-message_file', trace],
    });
    await user.heard.whenHeard(25);
    await phone.heard.whenHeard(25);
    assert.equal(await sipp.done, 0, `SIPp saw the call through:\n${sipp.proc.output.slice(-1500)}`);

    assert.deepEqual(mediaAddresses(offer), [VM_PUBLIC], `the offer WhatsApp got names only the public address:\n${offer}`);
    assert.deepEqual(mediaAddresses(firstSdpIn(trace, /SIP\/2\.0 200 OK[\s\S]*CSeq: 1 INVITE/)), [PBX_FACING], 'the 200 OK to the PBX names only the private address');
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const id = await whenEnded(s.bridge, invite.wacid);
    assert.equal((await rows().CallRecord.findByPk(id))?.outcome, 'answered');
    assert.ok(!(await eventTypes(s, id)).includes('media_address_mismatch'));
  });

  it('says so loudly when rtpengine advertises something other than PUBLIC_IP to WhatsApp', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const rtpPort = await phone.start();
    sipp = await startSippUas('uas-answer.xml', { rtpPort });
    // The operator set PUBLIC_IP, but rtpengine's WhatsApp-facing interface advertises another address.
    stack = await startStack({ ...natEnv(), PUBLIC_IP: '127.0.0.99', PBX_TARGET: sipp.uri });
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await stack.sim.userCalls(user);
    await stack.sim.waitForRequest('/calls/preAccept', wacid);
    await stack.sim.userHangsUp(wacid);
    const id = await whenEnded(stack.bridge, wacid);
    const mismatch = (await stack.bridge.cdr.events(id)).find((e) => e.type === 'media_address_mismatch');
    assert.ok(mismatch, 'the timeline says WhatsApp got the wrong address');
    assert.deepEqual(mismatch.detail, { advertised: [VM_PUBLIC], publicIp: '127.0.0.99' });
  });
});

/**
 * SIP addresses. A PBX across the NAT (compose with SIP_EXTERNAL_IP: drachtio-server's `--external-ip
 * --local-net`) is given the public address in Via and Contact and reaches the bridge through the NAT
 * for its in-dialog requests. A PBX on the private network (compose's default: no external IP) gets
 * the local address; with an external IP set, drachtio-server would give it the public one even inside
 * --local-net, which is why that is not the default.
 */
describe('SIP addresses behind 1:1 NAT', function () {
  this.timeout(60000);
  const LOCAL_NET = '127.0.0.64/26'; // the PBX's private network
  const PRIVATE_PBX = '127.0.0.70';
  let bridgeSip: DrachtioServer | null = null;
  let pbxSip: DrachtioServer | null = null;
  let pbxRtp: RtpengineInstance | null = null;
  let pbx: SrfPbx | null = null;
  let stack: TestStack | null = null;
  let sipp: SippRun | null = null;
  let user: WaUser | null = null;
  let phone: RtpPhone | null = null;
  let nat: TestNat | null = null;

  before(async function () {
    if (!infra.drachtio) return this.skip();
    nat = TestNat.open('wasb_sip_nat', 'SIP NAT TESTS');
    if (!nat) return this.skip();
    bridgeSip = await startDrachtio(findDrachtio()!, { nat: { externalIp: VM_PUBLIC, localNet: LOCAL_NET } });
    nat.dnat(VM_PUBLIC, String(bridgeSip.sipPort), '127.0.0.1');
    pbxSip = await startDrachtio(findDrachtio()!);
    pbxRtp = await startRtpengine({ portMin: 37800, portMax: 37999, interfaces: ['127.0.0.1'] });
  });

  after(async () => {
    nat?.close();
    await bridgeSip?.proc.stop();
    await pbxSip?.proc.stop();
    await pbxRtp?.proc.stop();
  });

  afterEach(async () => {
    user?.close();
    phone?.stop();
    await sipp?.proc.stop();
    await stack?.stop();
    await pbx?.close();
    stack = sipp = user = phone = pbx = null;
  });

  const host = (header: string) => /(?:SIP\/2\.0\/\w+ |sips?:(?:[^@>]+@)?)([0-9.]+)/.exec(header)?.[1];

  it('a PBX across the NAT (SIP_EXTERNAL_IP) is given the public address in Via and Contact, and its BYE reaches the bridge through the NAT', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    pbx = new SrfPbx(pbxSip!, pbxRtp!, await phone.start());
    await pbx.connect();
    stack = await startStack({ DRACHTIO_PORT: String(bridgeSip!.adminPort), DRACHTIO_SECRET: bridgeSip!.secret, PBX_TARGET: pbx.uri('udp') });
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await stack.sim.userCalls(user);
    await user.heard.whenHeard(25);
    await phone.heard.whenHeard(25);
    const invite = pbx.invites[0]!;
    assert.equal(host(invite.via), VM_PUBLIC, `Via: ${invite.via}`);
    assert.equal(host(invite.contact), VM_PUBLIC, `Contact: ${invite.contact}`);
    // The agent hangs up: the PBX's BYE goes to the public address in the Contact, through the NAT.
    await pbx.hangup();
    const row = await rows().CallRecord.findByPk(await whenEnded(stack.bridge, wacid));
    assert.equal(row?.hangup_by, 'pbx');
    assert.equal(row?.outcome, 'answered');
  });

  it('a PBX on the private network gets the local address by default; with an external IP set it would get the public one even inside --local-net', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-sipnat-'));
    const inviteSeenBy = async (drachtio: DrachtioServer, name: string): Promise<{ via: string; contact: string }> => {
      const trace = path.join(dir, `${name}.msg`);
      phone = new RtpPhone(AGENT_TONE, USER_TONE);
      sipp = await startSippUas('uas-answer.xml', { ip: PRIVATE_PBX, rtpPort: await phone.start(), extraArgs: ['-trace_msg', '-message_file', trace] });
      stack = await startStack({ DRACHTIO_PORT: String(drachtio.adminPort), DRACHTIO_SECRET: drachtio.secret, PBX_TARGET: sipp.uri });
      user = new WaUser(USER_TONE, AGENT_TONE);
      const { wacid } = await stack.sim.userCalls(user);
      await user.heard.whenHeard(25);
      await stack.sim.userHangsUp(wacid);
      await whenEnded(stack.bridge, wacid);
      assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
      user.close();
      phone.stop();
      await stack.stop();
      stack = null;
      const text = fs.readFileSync(trace, 'utf8');
      const invite = text.slice(text.indexOf('INVITE sip:'));
      return { via: host(/^Via: (.*)$/m.exec(invite)![1]!)!, contact: host(/^Contact: (.*)$/m.exec(invite)![1]!)! };
    };
    try {
      // The run's drachtio-server has no external IP: compose's default.
      assert.deepEqual(await inviteSeenBy(infra.drachtio!, 'default'), { via: '127.0.0.1', contact: '127.0.0.1' });
      // drachtio-server 0.9.10 puts the external IP in the INVITEs it sends, whatever --local-net says.
      assert.deepEqual(await inviteSeenBy(bridgeSip!, 'external'), { via: VM_PUBLIC, contact: VM_PUBLIC });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

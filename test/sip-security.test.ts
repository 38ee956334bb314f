import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { parsePromText } from './harness/prom-text';
import { refusalScenario, runSippUac, SippRun } from './harness/sipp';
import { whenEnded } from './harness/watch';
import { LogTap } from './harness/log-tap';

const BUSINESS = '+6283138205150';
const PHONE_ID = '461269257068831';

describe('start-up warning about the guard on agents\' calls out', () => {
  for (const [what, env, warned] of [
    // a list with a network address (one of loopback only warns of nothing: see outboundGuardWarning)
    ['only an address list', { SIP_TRUSTED_SOURCES: '127.0.0.0/8,192.0.2.10' }, true],
    ['an address list and digest credentials', { SIP_TRUSTED_SOURCES: '127.0.0.0/8', SIP_AUTH_USERNAME: 'pbx', SIP_AUTH_PASSWORD: 'pbx-digest-secret' }, false],
    ['no address at all (no calls out)', {}, false],
  ] as const) {
    it(`${warned ? 'warns loudly' : 'says nothing'} when ${what} guards them`, async () => {
      const log = new LogTap();
      const s = await startStack({ ...env, LOG_LEVEL: 'info' }, { logStream: log });
      await s.stop();
      const line = log.lines().find((l) => /^SECURITY: calls to WhatsApp are guarded only by SIP_TRUSTED_SOURCES/.test(String(l.msg)));
      if (!warned) return assert.equal(line, undefined);
      assert.ok(line, `a warning was logged:\n${log.lines().map((l) => l.msg).join('\n')}`);
      assert.equal(line.level, 40, 'at warn level');
      assert.match(String(line.msg), /SIP_AUTH_USERNAME and SIP_AUTH_PASSWORD/);
      assert.deepEqual(line.trustedSources, ['127.0.0.0/8', '192.0.2.10']);
    });
  }
});

/** Agents' INVITEs that try to get around the door: replayed credentials, floods, hostile input. */
describe('SIP security of agents\' INVITEs', function () {
  this.timeout(60000);
  const parts = callParts();
  const extra: SippRun[] = [];
  afterEach(async () => {
    for (const r of extra.splice(0)) await r.proc.stop();
  });

  const target = () => `127.0.0.1:${infra.drachtio!.sipPort}`;

  async function invites(s: TestStack): Promise<Record<string, number>> {
    const samples = parsePromText(await s.bridge.metrics.registry.metrics());
    const out: Record<string, number> = {};
    for (const smp of samples.filter((x) => x.name === 'wasb_sip_invites_received_total')) out[smp.labels.result!] = (out[smp.labels.result!] ?? 0) + smp.value;
    return out;
  }

  async function finished(run: SippRun): Promise<void> {
    assert.equal(await run.done, 0, `SIPp scenario completed:\n${run.proc.output.slice(-2000)}`);
  }

  /** The CDR of the call whose INVITE was the n-th this stack took (1-based). */
  async function nthCdr(s: TestStack, n: number): Promise<CallRecord> {
    const invite = s.marks.marks.filter((m) => m.name === 'invite_received')[n - 1];
    assert.ok(invite, `the bridge took INVITE #${n}`);
    const row = await rows().CallRecord.findByPk(await whenEnded(s.bridge, invite.wacid));
    assert.ok(row);
    return row;
  }

  it('a captured Authorization replayed on an INVITE to another number (or again to the same one) is refused with a new challenge', async () => {
    const auth = { username: 'pbx', password: 'pbx-digest-secret' };
    const s = (parts.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', SIP_AUTH_USERNAME: auth.username, SIP_AUTH_PASSWORD: auth.password, WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: PHONE_ID }));
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'wasb-replay-'));
    const trace = path.join(dir, 'messages.log');
    // The real agent: challenged, authenticated, then admitted (and refused for want of a permission).
    const first = '+6281300000101';
    const honest = (parts.sipp = await runSippUac('uac-auth-refused.xml', { target: target(), number: first, auth, extraArgs: ['-trace_msg', '-message_file', trace] }));
    await finished(honest);
    const sent = await fs.readFile(trace, 'utf8');
    await fs.rm(dir, { recursive: true, force: true });
    const captured = /^Authorization: Digest .*$/m.exec(sent)?.[0];
    assert.ok(captured, `SIPp sent an Authorization:\n${sent.slice(-3000)}`);
    assert.match(captured, /qop=auth/);
    assert.equal((await nthCdr(s, 1)).customer_number, first, 'the honest INVITE was admitted');

    // The eavesdropper: the same header on an INVITE to another number, to one with a permission, then to the first number again.
    const victim = '+6281300000102';
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, victim);
    const replay = (invite: string) => invite.replace('CSeq: 1 INVITE\n', `CSeq: 1 INVITE\n${captured.trim()}\n`);
    for (const number of [victim, first]) {
      const run = await runSippUac(await refusalScenario(401, 'nonce=', replay, 'WWW-Authenticate:'), { target: target(), number });
      extra.push(run);
      await finished(run);
    }
    const counts = await invites(s);
    assert.equal(counts.refused_auth, 2, JSON.stringify(counts));
    assert.equal(counts.accepted, 1, JSON.stringify(counts));
    assert.equal(s.sim.requests.some((r) => r.path === '/calls/connect'), false, 'no WhatsApp call was placed');
  });

  it('an INVITE flood from one trusted address gets 503 with Retry-After beyond its rate; another address is still served', async () => {
    const s = (parts.stack = await startStack({
      // The flood comes from 127.0.0.1, a trusted address (untrusted ones get 403 before any rate limit:
      // test/sip-outsiders.test.ts); its burst is admitted and refused for want of a permission (403).
      SIP_TRUSTED_SOURCES: '127.0.0.1,127.0.0.2', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: PHONE_ID,
      SIP_INVITE_RATE_PER_SOURCE: '1', SIP_INVITE_BURST_PER_SOURCE: '5', SIP_INVITE_RATE: '1000', SIP_INVITE_BURST: '1000',
    }));
    const burst = 40;
    const flood = (parts.sipp = await runSippUac('uac-invite-burst.xml', { target: target(), number: '+6281300000201', calls: burst, extraArgs: ['-r', '500', '-l', '10'] }));
    await finished(flood);
    const counts = await invites(s);
    const admitted = counts.accepted ?? 0;
    const limited = counts.refused_rate_limited ?? 0;
    assert.equal(admitted + limited, burst, JSON.stringify(counts));
    assert.ok(admitted >= 5 && limited >= burst / 2, `the burst of 5 passed, most of the rest was rate limited: ${JSON.stringify(counts)}`);

    // The PBX at 127.0.0.2 has its own budget: admitted (and refused only for want of a permission).
    const pbx = await runSippUac(await refusalScenario(403, 'permission'), { target: target(), number: '+6281300000202', extraArgs: ['-i', '127.0.0.2'] });
    extra.push(pbx);
    await finished(pbx);
    assert.equal((await invites(s)).accepted, admitted + 1);
  });

  it('beyond MAX_CALLS_IN_PROGRESS a new INVITE gets 503 with Retry-After, and the call in progress goes on', async () => {
    const s = (parts.stack = await startStack({
      SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: PHONE_ID, MAX_CALLS_IN_PROGRESS: '1', YCLOUD_TIMEOUT_MS: '3000',
    }));
    const busy = '+6281300000301';
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, busy);
    // The first call hangs in calls/connect until it times out (503 to its agent).
    s.sim.delay('/calls/connect', 5000);
    const connectSeen = new Promise<void>((resolve) => s.sim.on('request', (r: { path: string }) => r.path === '/calls/connect' && resolve()));
    const inProgress = (parts.sipp = await runSippUac(await refusalScenario(503, 'could not be placed'), { target: target(), number: busy }));
    await connectSeen;
    const second = await runSippUac(await refusalScenario(503, '[0-9]+', undefined, 'Retry-After:'), { target: target(), number: '+6281300000302' });
    extra.push(second);
    await finished(second);
    assert.equal((await invites(s)).refused_capacity, 1);
    await finished(inProgress);
    const row = await nthCdr(s, 1);
    assert.equal(row.customer_number, busy);
    assert.match(row.error ?? '', /YCloud: .*connect: timed out/);
  });

  it('hostile input (a forged display name and user, CR/LF and broken escapes in the Request-URI, a bad header) gets a 4xx; the next good call works', async () => {
    const s = (parts.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: PHONE_ID }));
    const run = async (scenario: string, number: string) => {
      const r = await runSippUac(scenario, { target: target(), number });
      extra.push(r);
      await finished(r);
    };
    // A From whose display name quotes another identity and whose user is no plain name: the call is
    // handled (403 here: no permission), and the CDR's agent is not the raw input.
    const forged = (invite: string) => invite.replace(/^From: .*$/m,
      'From: "Evil \\"admin\\" <sip:+1@evil.example>;x=" <sip:agent$(id),x=1@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]');
    await run(await refusalScenario(403, 'permission', forged), '+6281300000401');
    const row = await nthCdr(s, 1);
    assert.equal(row.agent, null, 'an agent name that is not plain is not stored');
    // CR/LF (percent-encoded) in the dialled number, and an escape that does not decode: not a number.
    await run(await refusalScenario(404, 'not a phone number'), '%0D%0AX-Injected:%201');
    await run(await refusalScenario(404, 'not a phone number'), '%FF%FE1234567');
    // A phone number id that is not one.
    const badPhoneId = (invite: string) => invite.replace('X-WhatsApp-Business-Number:', 'X-WhatsApp-Phone-Id: 4612;drop\nX-WhatsApp-Business-Number:');
    await run(await refusalScenario(400, 'phone number id', badPhoneId), '+6281300000402');
    // A malformed INVITE: its body is no SDP at all (to a customer who would take the call).
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, '+6281300000405');
    const garbage = (invite: string) => invite.replace(/\nv=0\n[\s\S]*?\n\n\]\]>/, '\n<<<not sdp>>> m=audio\n\n]]>');
    await run(await refusalScenario(488, undefined, garbage), '+6281300000405');

    // And the bridge is alive: the next good call is admitted and placed.
    const good = '+6281300000404';
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, good);
    s.sim.failNext('/calls/connect', { status: 503, message: 'stop here' });
    await run(await refusalScenario(503, 'could not be placed'), good);
    assert.equal(s.sim.requests.filter((r) => r.path === '/calls/connect').length, 1, 'the good call reached calls/connect');
    const counts = await invites(s);
    assert.equal(counts.refused_not_a_number, 2, JSON.stringify(counts));
    assert.equal(counts.refused_malformed, 1, JSON.stringify(counts));
  });
});

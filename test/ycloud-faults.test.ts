import assert from 'node:assert/strict';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { YCloudClient, YCloudError } from '../src/providers/ycloud/client';
import { startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { RtpPhone } from './harness/rtp-phone';
import { refusalScenario, runSippUac, startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { YCloudSim } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';
const LINE = { number: BUSINESS, phoneId: null, wabaId: '188234691048809' };
const REF = { phoneId: '461269257068831', wacid: 'wacid.unknown-to-the-sim' };

/** A loopback HTTP server that records the headers of every request it gets (and answers 200). */
async function headerRecorder(): Promise<{ url: string; seen: http.IncomingHttpHeaders[]; close: () => Promise<void> }> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** The YCloud client on its own against the simulator: redirects, retries and time bounds. */
describe('YCloud client under faults', () => {
  let sim: YCloudSim;
  const client = (timeoutMs = 2000) => new YCloudClient({ baseUrl: sim.baseUrl, apiKey: sim.apiKey, timeoutMs });
  const sent = (path: string) => sim.requests.filter((r) => r.path === path).length;

  beforeEach(async () => {
    sim = new YCloudSim('fault-test-api-key', 'secret');
    await sim.start();
  });
  afterEach(() => sim.stop());

  it('never follows a redirect: the API key does not reach the other host, and the error says what happened', async () => {
    const other = await headerRecorder();
    try {
      sim.failNext('/phoneNumbers/188234691048809/%2B6283138205150/settings', { status: 302, location: `${other.url}/v2/steal?x=1` });
      const err = await client().getCallingSettings(LINE).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof YCloudError, String(err));
      assert.equal(err.httpStatus, 302);
      assert.match(err.message, new RegExp(`302 redirecting to ${other.url.replace(/\./g, '\\.')};.*not followed.*YCLOUD_API_BASE_URL`));
      assert.doesNotMatch(err.message, /steal|x=1/, 'the Location\'s path and query are not repeated');
      // Same for a call request (POST), which is never retried either.
      sim.failNext('/calls/accept', { status: 307, location: `${other.url}/v2/whatsapp/calls/accept` });
      await assert.rejects(client().accept(REF, 'v=0'), /307 redirecting/);
      assert.equal(other.seen.length, 0, `the other host got ${other.seen.length} requests (headers: ${JSON.stringify(other.seen)})`);
    } finally {
      await other.close();
    }
  });

  it('retries what is safe to repeat (terminate, reject, GET settings) on 5xx and 429, within its timeout', async () => {
    sim.failNext('/calls/terminate', { status: 503, message: 'try again' });
    sim.failNext('/calls/terminate', { status: 500, message: 'oops' });
    // The third attempt reaches the simulator's handler: an unknown wacid is its 404, which ends the retries.
    await assert.rejects(client().terminate(REF), (err: unknown) => err instanceof YCloudError && err.httpStatus === 404);
    assert.equal(sent('/calls/terminate'), 3);

    sim.failNext('/calls/reject', { status: 429, message: 'slow down' });
    await assert.rejects(client().reject(REF), (err: unknown) => err instanceof YCloudError && err.httpStatus === 404);
    assert.equal(sent('/calls/reject'), 2);

    const settingsPath = '/phoneNumbers/188234691048809/%2B6283138205150/settings';
    sim.failNext(settingsPath, { status: 502 });
    assert.deepEqual(await client().getCallingSettings(LINE), { calling: { status: 'DISABLED', iconVisibility: 'DEFAULT' } });
    assert.equal(sent(settingsPath), 2);

    // A 4xx is an answer, not a hiccup: not repeated.
    sim.failNext('/calls/terminate', { status: 400, code: 'FAILED_PRECONDITION', message: 'call already ended' });
    await assert.rejects(client().terminate(REF), /400 call already ended/);
    assert.equal(sent('/calls/terminate'), 4);
  });

  it('gives up retrying at the attempt limit', async () => {
    for (let i = 0; i < 5; i++) sim.failNext('/calls/terminate', { status: 503 });
    await assert.rejects(client().terminate(REF), (err: unknown) => err instanceof YCloudError && err.httpStatus === 503);
    assert.equal(sent('/calls/terminate'), 3);
  });

  it('never repeats preAccept, accept or connect (no documented idempotency; a second connect is a second call)', async () => {
    sim.failNext('/calls/preAccept', { status: 503 });
    await assert.rejects(client().preAccept(REF, 'v=0'), /503/);
    sim.failNext('/calls/accept', { status: 500 });
    await assert.rejects(client().accept(REF, 'v=0'), /500/);
    sim.failNext('/calls/connect', { status: 503 });
    await assert.rejects(client().connect({ from: LINE, to: CUSTOMER, sdpOffer: 'v=0', context: null }), /503/);
    assert.deepEqual([sent('/calls/preAccept'), sent('/calls/accept'), sent('/calls/connect')], [1, 1, 1]);
  });

  it('bounds every request, retries included, by the timeout; a timed-out terminate is not sent again', async () => {
    sim.delay('/calls/accept', 3000);
    const accept = await client(300).accept(REF, 'v=0').then(() => null, (e: unknown) => e);
    assert.ok(accept instanceof YCloudError && accept.timedOut, String(accept));
    assert.match(accept.message, /timed out after 300 ms/);

    sim.delay('/calls/terminate', 3000);
    const terminate = await client(300).terminate(REF).then(() => null, (e: unknown) => e);
    assert.ok(terminate instanceof YCloudError && terminate.timedOut, String(terminate));
    assert.equal(sent('/calls/terminate'), 1);
  });
});

/** What a call does when YCloud fails under it: the CDR says so, and both legs are ended properly. */
describe('calls when YCloud fails', function () {
  this.timeout(45000);
  const parts = callParts();

  async function cdr(s: TestStack, key: string): Promise<CallRecord> {
    const id = await whenEnded(s.bridge, key);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'CDR row exists');
    return row;
  }

  async function timeline(s: TestStack, id: string): Promise<string[]> {
    return (await s.bridge.cdr.events(id)).map((e) => e.type);
  }

  it('preAccept fails: the WhatsApp call is rejected, no INVITE goes to the PBX, CDR failed with YCloud\'s error', async () => {
    const s = (parts.stack = await startStack({ PBX_TARGET: 'sip:127.0.0.1:9' }));
    parts.user = new WaUser(440, 1000);
    s.sim.failNext('/calls/preAccept', { status: 500, code: 'INTERNAL', message: 'simulated preAccept failure' });
    const { wacid } = await s.sim.userCalls(parts.user);
    const row = await cdr(s, wacid);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid), 'the call was rejected at WhatsApp');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', /^YCloud: .*preAccept: 500 simulated preAccept failure/);
    assert.equal((await timeline(s, row.id)).includes('invite_sent'), false, 'no INVITE was sent');
    assert.equal(s.sim.requestsFor(wacid).filter((r) => r.path === '/calls/preAccept').length, 1, 'preAccept is not retried');
  });

  it('accept times out after the PBX answered: the agent gets BYE, the WhatsApp call is terminated, CDR failed with the timeout', async () => {
    parts.phone = new RtpPhone(1000, 440);
    parts.sipp = await startSippUas('uas-answer.xml', { rtpPort: await parts.phone.start() });
    const s = (parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri, YCLOUD_TIMEOUT_MS: '500' }));
    s.sim.delay('/calls/accept', 3000);
    parts.user = new WaUser(440, 1000);
    const { wacid } = await s.sim.userCalls(parts.user);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp.done, 0, `the agent leg was answered, then hung up with BYE:\n${parts.sipp.proc.output.slice(-1500)}`);
    assert.equal(row.outcome, 'failed');
    assert.match(row.error ?? '', /^YCloud: .*accept: timed out after 500 ms/);
    assert.equal(row.sip_final_code, 200);
    assert.equal(s.sim.requestsFor(wacid).filter((r) => r.path === '/calls/accept').length, 1, 'accept is not retried');
    // The accept may have been applied (no answer is no refusal): the call is ended as an accepted one.
    assert.ok(await s.sim.waitForRequest('/calls/terminate', wacid), 'the WhatsApp leg was terminated');
    assert.equal(s.sim.requestsFor(wacid).some((r) => r.path === '/calls/reject'), false, 'terminate was enough (no reject after it)');
  });

  for (const fault of ['a 503', 'a timeout'] as const) {
    it(`calls/connect fails with ${fault} for an agent's call: the agent gets 503 with a Reason, CDR failed naming YCloud`, async () => {
      const s = (parts.stack = await startStack({
        SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', YCLOUD_TIMEOUT_MS: '500',
      }));
      await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
      if (fault === 'a 503') s.sim.failNext('/calls/connect', { status: 503, code: 'UNAVAILABLE', message: 'simulated connect failure' });
      else s.sim.delay('/calls/connect', 3000);
      parts.sipp = await runSippUac(await refusalScenario(503, 'cause=41'), { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER });
      assert.equal(await parts.sipp.done, 0, `the agent got 503 with the Reason:\n${parts.sipp.proc.output.slice(-1500)}`);
      const invite = s.marks.marks.find((m) => m.name === 'invite_received');
      assert.ok(invite, 'the bridge took the INVITE');
      const row = await cdr(s, invite.wacid);
      assert.equal(row.outcome, 'failed');
      assert.equal(row.sip_final_code, 503);
      assert.match(row.error ?? '', fault === 'a 503' ? /^YCloud: .*connect: 503 simulated connect failure/ : /^YCloud: .*connect: timed out after 500 ms/);
      assert.equal(s.sim.requests.filter((r) => r.path === '/calls/connect').length, 1, 'connect is not retried');
    });
  }
});

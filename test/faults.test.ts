import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { MediaStats } from '../src/media/stats';
import { startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { DrachtioServer, findDrachtio, relaunchDrachtio, startDrachtio } from './harness/drachtio';
import { databaseUrlVia, infra } from './harness/infra';
import { LogTap } from './harness/log-tap';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { freePort } from './harness/processes';
import { startSippUas } from './harness/sipp';
import { TcpProxy } from './harness/tcp-proxy';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;

async function timeline(s: TestStack, id: string): Promise<string[]> {
  return (await s.bridge.cdr.events(id)).map((e) => e.type);
}

/** Postgres as the bridge reaches it: through a relay the test can cut. */
function postgresProxy(): TcpProxy {
  return new TcpProxy(infra.isolated ? { path: '/var/run/postgresql/.s.PGSQL.5432' } : { host: '127.0.0.1', port: 5432 });
}

/** The admin token of stacks whose /readyz details a test reads (the rtpengine addresses are for it only). */
const ADMIN = 'faults-admin-token-0123456789';

async function readyz(s: TestStack): Promise<{ status: number; checks: Record<string, unknown>; details?: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${s.bridge.httpPort}/readyz`, { headers: { Authorization: `Bearer ${ADMIN}` } });
  const body = (await res.json()) as { checks: Record<string, unknown>; details?: Record<string, unknown> };
  return { status: res.status, checks: body.checks, details: body.details };
}

/** Resolves at the Srf's next `event` ('close' when drachtio-server goes, 'connect' when it is back). */
function srfEvent(s: TestStack, event: 'close' | 'connect'): Promise<void> {
  return new Promise((resolve) => (s.bridge.sip.srf as unknown as NodeJS.EventEmitter).once(event, () => resolve()));
}

function proxiedUrl(port: number): string {
  return databaseUrlVia(port);
}

/**
 * Infrastructure failing under calls: Postgres, drachtio-server, one rtpengine of several, the PBX.
 * Each test says what the bridge must do about it, and checks the CDR that comes out.
 */
describe('infrastructure faults', function () {
  this.timeout(90000);
  const parts = callParts();
  let proxy: TcpProxy | null = null;

  afterEach(async () => {
    await proxy?.close();
    proxy = null;
  });

  for (const mode of ['refusing', 'blackholed'] as const) {
    it(`Postgres ${mode} mid-call: the call goes on, its CDR writes are retried, and afterwards the record is complete`, async () => {
      proxy = postgresProxy();
      const dbPort = await proxy.start();
      const log = new LogTap();
      parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
      // The agent answers, and hangs up 2.5 s later: the whole end of the call happens in the outage.
      parts.sipp = await startSippUas('uas-answer-hangup.xml', { rtpPort: await parts.phone.start() });
      const s = (parts.stack = await startStack({
        PBX_TARGET: parts.sipp.uri, DATABASE_URL: proxiedUrl(dbPort), DATABASE_TIMEOUT_MS: '1000', LOG_LEVEL: 'info',
      }, { logStream: log }));
      parts.user = new WaUser(USER_TONE, AGENT_TONE);
      const { wacid } = await s.sim.userCalls(parts.user);

      await s.marks.waitFor(wacid, 'pbx_answered');
      const cutAt = Date.now();
      if (mode === 'refusing') await proxy.close();
      else proxy.blackhole();

      // Audio flows both ways with Postgres gone, and the call ends normally on both sides.
      await parts.user.heard.whenHeard(25);
      await parts.phone.heard.whenHeard(25);
      assert.equal(await parts.sipp.done, 0, `the agent's BYE was answered:\n${parts.sipp.proc.output.slice(-1500)}`);
      assert.ok(await s.sim.waitForRequest('/calls/terminate', wacid), 'the WhatsApp leg was terminated');
      const failed = await log.waitFor(/CDR .* failed; retrying until Postgres answers/);
      assert.deepEqual(Object.keys(failed.err as object).sort(), ['code', 'message'], 'only message and code are logged');
      assert.equal(log.all.includes('+6281361905133'), false, 'no phone number in the logs');
      assert.equal(log.all.includes('INSERT INTO'), false, 'no SQL in the logs');
      if (mode === 'blackholed') {
        // A webhook in the outage is answered (503: YCloud retries) within the database's bounds, not hung.
        const t0 = performance.now();
        const status = await s.sim.deliver(s.sim.event('whatsapp.call.terminate', { callingTerminate: { id: 'x', wacid: 'wacid.unknown', phoneId: '1', from: '+1', to: '+2', status: 'COMPLETED' } }));
        const ms = performance.now() - t0;
        assert.equal(status, 503);
        assert.ok(ms < 3 * 1000 + 1000, `webhook answered after ${Math.round(ms)} ms with Postgres blackholed (DATABASE_TIMEOUT_MS 1000)`);
        console.log(`      (a webhook during the outage got 503 after ${Math.round(ms)} ms)`);
        const ready = await fetch(`http://127.0.0.1:${s.bridge.httpPort}/readyz`);
        assert.equal(ready.status, 503);
        assert.equal(((await ready.json()) as { checks: { postgres: boolean } }).checks.postgres, false);
      }

      if (mode === 'refusing') await proxy.start(dbPort);
      else proxy.restore();
      const outageMs = Date.now() - cutAt;
      const id = await whenEnded(s.bridge, wacid);
      await log.waitFor(/CDR writes go through again/);

      const row = await rows().CallRecord.findByPk(id);
      assert.ok(row, 'CDR row exists');
      assert.equal(row.state, 'ended');
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.agent, 'agent102');
      assert.equal(row.sip_final_code, 200);
      assert.ok(row.sip_call_id);
      assert.equal(row.pbx_codec, 'PCMU/8000');
      assert.ok(row.accepted_at && row.ended_at && row.accepted_at <= row.ended_at);
      assert.ok(Number(row.talk_seconds) > 1, `talk time ${row.talk_seconds}`);
      const stats = row.media_stats as MediaStats;
      assert.ok(stats.legs.whatsapp!.packets > 25 && stats.legs.pbx!.packets > 25, 'media statistics written');
      assert.deepEqual(await timeline(s, id), ['offered', 'pre_accepted', 'invite_sent', 'pbx_progress', 'pbx_answered', 'accepted', 'ended']);
      console.log(`      (Postgres ${mode} for ${outageMs} ms; every CDR write landed after it)`);
    });
  }

  describe('drachtio-server restarted', () => {
    let drachtio: DrachtioServer | null = null;
    beforeEach(async function () {
      if (!infra.drachtio) return this.skip();
      drachtio = await startDrachtio(findDrachtio()!);
    });
    afterEach(async () => {
      await drachtio?.proc.stop();
      drachtio = null;
    });

    /** The bridge on this test's own drachtio-server, answered by SIPp running `scenario`. */
    async function stackOnOwnDrachtio(scenario: string, log?: LogTap, requestTimeoutMs = 2000): Promise<TestStack> {
      parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
      parts.sipp = await startSippUas(scenario, { rtpPort: await parts.phone.start() });
      return (parts.stack = await startStack({
        PBX_TARGET: parts.sipp.uri, DRACHTIO_PORT: String(drachtio!.adminPort), DRACHTIO_SECRET: drachtio!.secret,
        SIP_REQUEST_TIMEOUT_MS: String(requestTimeoutMs), ...(log ? { LOG_LEVEL: 'info' } : {}),
      }, log ? { logStream: log } : {}));
    }

    /** drachtio-server goes away and comes back: readiness follows it both ways. */
    async function restart(s: TestStack, whileDown: () => Promise<void> = async () => undefined): Promise<void> {
      const lost = srfEvent(s, 'close');
      await drachtio!.proc.stop();
      await lost;
      const down = await readyz(s);
      assert.equal(down.status, 503, 'not ready while drachtio-server is down');
      assert.equal(down.checks.sip, false);
      await whileDown();
      const back = srfEvent(s, 'connect');
      await relaunchDrachtio(drachtio!);
      await back;
      const up = await readyz(s);
      assert.equal(up.status, 200, JSON.stringify(up.checks));
      assert.equal(up.checks.sip, true);
    }

    it('mid-call: media keeps flowing while it is down and after, and the call still ends cleanly with a CDR that says what happened to the BYE', async () => {
      const log = new LogTap();
      const s = await stackOnOwnDrachtio('uas-answer.xml', log);
      const user = (parts.user = new WaUser(USER_TONE, AGENT_TONE));
      const phone = parts.phone!;
      const { wacid } = await s.sim.userCalls(user);
      await user.heard.whenHeard(25);
      await phone.heard.whenHeard(25);

      // 0.5 s more of each side's audio while drachtio-server is down, and again once it is back.
      const more = async () => {
        await user.heard.whenHeard(user.heard.framesWithTone + 25);
        await phone.heard.whenHeard(phone.heard.framesWithTone + 25);
      };
      await restart(s, more);
      await more();

      const t0 = performance.now();
      await s.sim.userHangsUp(wacid);
      const id = await whenEnded(s.bridge, wacid);
      const ms = performance.now() - t0;
      assert.ok(ms < 2000 + 1000, `the teardown took ${Math.round(ms)} ms (BYE bound 2000 ms)`);
      const row = await rows().CallRecord.findByPk(id);
      assert.ok(row);
      assert.equal(row.state, 'ended');
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      assert.ok(row.ended_at);
      const events = await s.bridge.cdr.events(id);
      // When the loss was noticed (the dialog watch, or the hang-up) may come before or after the terminate.
      assert.equal(events.filter((e) => e.type === 'pbx_dialog_lost').length, 1, 'the loss is in the timeline');
      assert.deepEqual(events.map((e) => e.type).filter((t) => t !== 'pbx_dialog_lost'), [
        'offered', 'pre_accepted', 'invite_sent', 'pbx_progress', 'pbx_answered', 'accepted', 'whatsapp_terminated', 'pbx_bye_outside_dialog', 'ended',
      ]);
      assert.deepEqual(events.find((e) => e.type === 'pbx_bye_outside_dialog')!.detail, { result: 'answered 200' });
      assert.equal(await parts.sipp!.done, 0, `the PBX got the BYE and answered it:\n${parts.sipp!.proc.output.slice(-1500)}`);
      assert.ok(await log.waitFor(/drachtio-server lost the PBX dialog/));
    });

    it('mid-call, then the agent hangs up: drachtio-server answers that BYE itself, the bridge finds out by asking the PBX, and ends the call', async function () {
      // The bridge asks the PBX about the lost dialog every SIP_REQUEST_TIMEOUT_MS: 12 s, so the scenario's
      // BYE (6 s after answering) comes before the first question even on a busy machine.
      const s = await stackOnOwnDrachtio('uas-answer-hangup-lost.xml', undefined, 12000);
      const user = (parts.user = new WaUser(USER_TONE, AGENT_TONE));
      const { wacid } = await s.sim.userCalls(user);
      await s.marks.waitFor(wacid, 'pbx_answered');
      // The bridge has the 200 when it marks the answer, but the ACK is drachtio-server's to send: stopped
      // before it went out, the restarted one drops the 200's retransmissions as strays, SIPp never gets
      // its ACK and gives the call up (answering the bridge's OPTIONS 200, then nothing at all).
      await drachtio!.proc.waitFor(/send \d+ bytes to \S+ at \S+\r?\nACK sip:/, 5000);
      // The agent hangs up 6 s after answering: by then drachtio-server has restarted.
      await restart(s);
      const id = await whenEnded(s.bridge, wacid);
      assert.equal(await parts.sipp!.done, 0, `SIPp's BYE got 481 and it answered the bridge's OPTIONS with 481:\n${parts.sipp!.proc.output.slice(-1500)}`);
      assert.ok(await s.sim.waitForRequest('/calls/terminate', wacid), 'the WhatsApp leg was ended');
      const row = await rows().CallRecord.findByPk(id);
      assert.equal(row?.outcome, 'answered');
      assert.equal(row?.hangup_by, 'pbx');
      assert.ok(Number(row?.talk_seconds) > 2, `talk time ${row?.talk_seconds}`);
      assert.deepEqual((await timeline(s, id)).slice(-4), ['accepted', 'pbx_dialog_lost', 'pbx_dialog_gone', 'ended']);
    });

    it('between calls: a call while it is down is turned away at once, and once it is back a new call is bridged as usual', async () => {
      const s = await stackOnOwnDrachtio('uas-answer-hangup.xml');
      let refusedId = '';
      await restart(s, async () => {
        const early = new WaUser(USER_TONE, AGENT_TONE);
        try {
          const { wacid } = await s.sim.userCalls(early);
          assert.ok(await s.sim.waitForRequest('/calls/reject', wacid), 'WhatsApp told at once');
          refusedId = await whenEnded(s.bridge, wacid);
        } finally {
          early.close();
        }
      });
      const refused = await rows().CallRecord.findByPk(refusedId);
      assert.equal(refused?.outcome, 'failed');
      assert.match(refused?.error ?? '', /not ready: .*drachtio-server/);

      const user = (parts.user = new WaUser(USER_TONE, AGENT_TONE));
      const { wacid } = await s.sim.userCalls(user);
      await user.heard.whenHeard(25);
      await parts.phone!.heard.whenHeard(25);
      const row = await rows().CallRecord.findByPk(await whenEnded(s.bridge, wacid));
      assert.equal(await parts.sipp!.done, 0);
      assert.equal(row?.outcome, 'answered');
      assert.equal(row?.hangup_by, 'pbx');
      assert.equal(row?.sip_final_code, 200);
    });
  });

  describe('one rtpengine of two down', () => {
    let second: RtpengineInstance | null = null;
    const others: WaUser[] = [];
    afterEach(async () => {
      for (const u of others.splice(0)) u.close();
      await second?.proc.stop();
      second = null;
    });

    it('readiness names the dead one and stays ready, a new call goes to the other, and the call on the dead one ends with a CDR error naming it', async () => {
      second = await startRtpengine({ portMin: 37600, portMax: 37799 });
      const dead = `${second.ng.host}:${second.ng.port}`;
      const alive = `${infra.rtpengineNg!.host}:${infra.rtpengineNg!.port}`;
      // One agent phone for both calls: it answers whichever rtpengine is sending to it.
      parts.phone = new RtpPhone(AGENT_TONE, USER_TONE, { followSource: true });
      parts.sipp = await startSippUas('uas-answer.xml', { rtpPort: await parts.phone.start(), calls: 2 });
      // Round robin starts with the first: the first call's media is on the rtpengine that will die.
      const s = (parts.stack = await startStack({
        PBX_TARGET: parts.sipp.uri, RTPENGINE_NG: `${dead},${alive}`, RTPENGINE_PING_S: '1', RTPENGINE_TIMEOUT_MS: '500', ADMIN_API_TOKEN: ADMIN,
      }));
      const first = (parts.user = new WaUser(USER_TONE, AGENT_TONE));
      const call1 = await s.sim.userCalls(first);
      await first.heard.whenHeard(25);
      await parts.phone.heard.whenHeard(25);

      const down = new Promise<void>((resolve) => s.bridge.rtp.on('health', (at, ok) => at === dead && !ok && resolve()));
      await second.proc.stop();
      await down;
      const r = await readyz(s);
      assert.equal(r.status, 200, 'one rtpengine answering is enough');
      assert.equal(r.checks.rtpengine, true);
      assert.deepEqual(r.details?.rtpengine, { [dead]: false, [alive]: true });

      // The call on the dead rtpengine: its user hangs up; the teardown's commands time out, the CDR says so.
      const t0 = performance.now();
      await s.sim.userHangsUp(call1.wacid);
      const row1 = await rows().CallRecord.findByPk(await whenEnded(s.bridge, call1.wacid));
      const ms = performance.now() - t0;
      assert.ok(ms < 2 * 500 + 2000, `ended ${Math.round(ms)} ms after the hang-up (two commands of 500 ms)`);
      assert.equal(row1?.state, 'ended');
      assert.equal(row1?.outcome, 'answered');
      assert.equal(row1?.media_stats, null, 'no statistics from a dead rtpengine');
      assert.match(row1?.error ?? '', new RegExp(`^media: rtpengine query at ${dead.replace(/\./g, '\\.')}: .*time`, 'i'));

      // A new call is bridged through the rtpengine that answers, with audio both ways.
      const user2 = new WaUser(USER_TONE, AGENT_TONE);
      others.push(user2);
      const heardBefore = parts.phone.heard.framesWithTone;
      const call2 = await s.sim.userCalls(user2);
      await user2.heard.whenHeard(25);
      await parts.phone.heard.whenHeard(heardBefore + 25);
      await s.sim.userHangsUp(call2.wacid);
      const row2 = await rows().CallRecord.findByPk(await whenEnded(s.bridge, call2.wacid));
      assert.equal(row2?.outcome, 'answered');
      assert.equal(row2?.error, null);
      assert.ok((row2?.media_stats as MediaStats | null)?.legs.whatsapp, 'statistics from the live rtpengine');
      assert.equal(await parts.sipp.done, 0, `both calls got their BYE:\n${parts.sipp.proc.output.slice(-1500)}`);
    });
  });

  /**
   * The PBX failing to take a call, each way it can: the WhatsApp call is rejected (never accepted),
   * within a bound, and the CDR says how. Busy (486) is in inbound.test.ts.
   */
  describe('the PBX does not take the call', () => {
    let silent: dgram.Socket | null = null;
    afterEach(() => {
      silent?.close();
      silent = null;
    });

    async function rejectedCall(env: Record<string, string>): Promise<{ row: CallRecord; events: string[]; ms: number }> {
      const s = (parts.stack = await startStack(env));
      parts.user = new WaUser(USER_TONE, AGENT_TONE);
      const t0 = performance.now();
      const { wacid } = await s.sim.userCalls(parts.user);
      assert.ok(await s.sim.waitForRequest('/calls/reject', wacid), 'the WhatsApp call is rejected');
      const ms = performance.now() - t0;
      const id = await whenEnded(s.bridge, wacid);
      assert.equal(s.sim.requestsFor(wacid).some((r) => r.path === '/calls/accept'), false, 'never accepted');
      const row = await rows().CallRecord.findByPk(id);
      assert.ok(row);
      assert.equal(row.accepted_at, null);
      assert.equal(row.talk_seconds, null);
      return { row, events: await timeline(s, id), ms };
    }

    it('down (nothing listening, ICMP port unreachable): rejected well before the response timeout, CDR unreachable with drachtio-server\'s 503', async () => {
      const port = await freePort('udp');
      const { row, events, ms } = await rejectedCall({ PBX_TARGET: `sip:127.0.0.1:${port}`, PBX_RESPONSE_TIMEOUT_MS: '8000' });
      assert.ok(ms < 4000, `rejected ${Math.round(ms)} ms after the offer: the ICMP error was taken, not the 8 s response timeout`);
      assert.equal(row.outcome, 'unreachable');
      assert.equal(row.hangup_by, 'pbx');
      // drachtio-server answers the INVITE itself with 503 when the network says nothing listens there.
      assert.equal(row.sip_final_code, 503);
      assert.deepEqual(events, ['offered', 'pre_accepted', 'invite_sent', 'pbx_failed', 'ended']);
    });

    it('silent (takes the INVITE, never answers): rejected after PBX_RESPONSE_TIMEOUT_MS, CDR unreachable', async () => {
      silent = dgram.createSocket('udp4');
      await new Promise<void>((r) => silent!.bind(0, '127.0.0.1', r));
      const { row, events, ms } = await rejectedCall({ PBX_TARGET: `sip:127.0.0.1:${silent.address().port}`, PBX_RESPONSE_TIMEOUT_MS: '1500' });
      assert.ok(ms >= 1500 && ms < 1500 + 2000, `rejected ${Math.round(ms)} ms after the offer (response timeout 1500 ms)`);
      assert.equal(row.outcome, 'unreachable');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.sip_final_code, null, 'nothing answered');
      assert.deepEqual(events, ['offered', 'pre_accepted', 'invite_sent', 'pbx_failed', 'ended']);
    });

    it('rings and never answers: the INVITE is cancelled at the ring timeout, CDR no_answer', async () => {
      parts.sipp = await startSippUas('uas-ring.xml');
      const { row, events, ms } = await rejectedCall({ PBX_TARGET: parts.sipp.uri, PBX_NO_ANSWER_TIMEOUT_S: '2' });
      assert.ok(ms >= 2000 && ms < 2000 + 2000, `rejected ${Math.round(ms)} ms after the offer (ring timeout 2 s)`);
      assert.equal(await parts.sipp!.done, 0, `the PBX saw the CANCEL and answered 487:\n${parts.sipp!.proc.output.slice(-1500)}`);
      assert.equal(row.outcome, 'no_answer');
      assert.equal(row.hangup_by, 'bridge');
      assert.ok(row.pbx_ringing_at, 'it did ring');
      // The 487 answers our own CANCEL: it is not the PBX's decision, and the CDR does not take it as one.
      assert.equal(row.sip_final_code, null);
      assert.deepEqual(events, ['offered', 'pre_accepted', 'invite_sent', 'pbx_progress', 'no_answer_timeout', 'pbx_failed', 'ended']);
    });
  });
});

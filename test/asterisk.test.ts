import assert from 'node:assert/strict';
import { CallRecord } from '../src/cdr/models';
import { Asterisk, findAsterisk } from './harness/asterisk';
import { startStack, TestStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { infra } from './harness/global-setup';
import { Timeline, within } from './harness/timeline';
import { WaUser } from './harness/wa-user';

const USER_TONE = 440;

/**
 * A real Asterisk (PJSIP) as the PBX: its session timers refresh the call while audio keeps flowing,
 * and its IVR (Read()) gets the digits a WhatsApp caller presses. Skipped loudly without `asterisk`.
 */
describe('a real Asterisk as the PBX', function () {
  this.timeout(150000);
  const bin = findAsterisk();
  let pbx: Asterisk | null = null;
  let stack: TestStack | null = null;
  let user: WaUser | null = null;
  let browser: BrowserHandle | null = null;
  let caller: BrowserWaUser | null = null;

  before(function () {
    if (!infra.drachtio) return this.skip();
    if (!bin) {
      console.log('\n!!! ASTERISK TESTS SKIPPED: asterisk not found (set ASTERISK_BIN or put `asterisk` on PATH) !!!\n');
      return this.skip();
    }
  });

  afterEach(async () => {
    user?.close();
    await caller?.close();
    await browser?.close();
    await stack?.stop();
    await pbx?.stop();
    user = caller = browser = stack = pbx = null;
  });

  async function endedRow(s: TestStack, wacid: string): Promise<CallRecord> {
    const row = await CallRecord.findByPk(await s.bridge.calls.whenEnded(wacid));
    assert.ok(row);
    return row;
  }

  it('session timers: Asterisk refreshes a 90 s session twice and the call keeps audio both ways', async () => {
    pbx = await new Asterisk(bin!, {
      endpoint: ['timers = always', 'timers_sess_expires = 90', 'timers_min_se = 90'],
      dialplan: ['exten => _X.,1,Answer()', ' same => n,Echo()'],
    }).start();
    const s = (stack = await startStack({ PBX_TARGET: pbx.uri }));
    const timeline = new Timeline(s.bridge.cdr);
    user = new WaUser(USER_TONE, USER_TONE); // Asterisk's Echo() sends the user's own tone back
    const { wacid } = await s.sim.userCalls(user);
    await within(user.heard.whenHeard(25), 10000, () => 'the user hears the echo through Asterisk');
    const refreshes = () => timeline.events.filter((e) => e.type === 'session_refresh' || e.type === 'pbx_media_changed').length;
    // Asterisk refreshes at half the interval: two refreshes within ~95 s.
    await within(new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (refreshes() >= 2) {
          clearInterval(t);
          resolve();
        }
      }, 200);
    }), 110000, () => `two session refreshes from Asterisk (timeline: ${timeline.types().join(', ')})`);
    const before = user.heard.framesWithTone;
    await within(user.heard.whenHeard(before + 50), 5000, () => 'the echo still flows after two refreshes');
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    assert.ok(Number(row.talk_seconds) > 90, `talk time ${row.talk_seconds}`);
  });

  it('IVR: Asterisk Read() gets the digits the WhatsApp caller presses', async function () {
    const missing = !BrowserWaUser.available() ? 'chromium is not installed' : BrowserWaUser.isolationProblem();
    if (missing) {
      console.log(`\n!!! ASTERISK IVR TEST SKIPPED: ${missing} !!!\n`);
      return this.skip();
    }
    pbx = await new Asterisk(bin!, {
      dialplan: ['exten => _X.,1,Answer()', ' same => n,Read(DIGITS,,4,,,20)', ' same => n,Verbose(1,IVR-DIGITS=${DIGITS}=END)', ' same => n,Echo()'],
    }).start();
    const s = (stack = await startStack({ PBX_TARGET: pbx.uri }));
    browser = await BrowserWaUser.launch({ toneHz: USER_TONE });
    caller = new BrowserWaUser(browser, USER_TONE, { listenHz: USER_TONE });
    const { wacid } = await s.sim.userCalls(caller);
    await caller.connected(10000);
    await s.sim.waitForRequest('/calls/accept', wacid);
    await caller.waitPacketsReceived(25, 10000);
    await caller.sendDigits('159#', 120, 80);
    const m = await pbx.waitForLog(/IVR-DIGITS=([0-9*#]*)=END/, 15000);
    assert.equal(m[1], '159', 'Read() ends on # and keeps the digits before it');
    await s.sim.userHangsUp(wacid);
    await endedRow(s, wacid);
  });
});

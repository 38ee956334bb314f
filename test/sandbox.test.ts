import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Page } from 'puppeteer-core';
import { createLogger } from '../src/log';
import { Sandbox, startSandbox } from '../src/sandbox/sandbox';
import { signWebhook } from '../src/providers/ycloud/signature';
import { withTimeout } from '../src/sip/dialog-requests';
import { infraEnv, startStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { Asterisk, findAsterisk, SAMPLE_USERNAMES } from './harness/asterisk';
import { RtpPhone } from './harness/rtp-phone';
import { frames, installMeter, phoneState, phoneWacid, timelineRows } from './harness/sandbox-page';
import { until } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { refusalScenario, runSippUac } from './harness/sipp';
import { startLocalServices } from '../src/sandbox/local-services';
import type { SimPermissionRequest } from '../src/sandbox/ycloud-simulator';

/** The fake microphone's tone (Chromium plays a WAV of it) and the agent's tone in the SIPp call. */
const MIC_HZ = 440;
const AGENT_HZ = 1000;
const USER = '+15550100001';
const BUSINESS = '+15550100000';

/** The sandbox page's own settings in these tests: no voice processing, which would treat a steady tone as noise. */
const PAGE_QUERY = '?processing=off';

/** The CDR row of the call with this wacid, once it has appeared in the page's timeline. */
function cdrRow(page: Page, wacid: string, detail?: () => Promise<string>): Promise<string> {
  return until('the CDR appears in the timeline', async () => (await timelineRows(page, 'cdr')).find((r) => r.includes(wacid)) ?? null, 15000, detail);
}

/** The CDR row's summary (its text), and its folded raw row. */
function cdrShown(page: Page, wacid: string): Promise<{ summary: string; rawOpen: boolean; rawRows: number }> {
  return page.$$eval('[data-testid="timeline"] [data-kind="cdr"]', (rows, id) => {
    const row = rows.find((r) => r.dataset.wacid === id);
    const raw = row.querySelector('details.cdr-raw');
    return { summary: row.querySelector('[data-testid="cdr-summary"]')?.textContent ?? '', rawOpen: raw.open, rawRows: raw.querySelectorAll('tr').length };
  }, wacid);
}

/** The agent dials without naming a business number: the bridge's default (WA_BUSINESS_NUMBER) calls. */
const withoutBusinessHeader = (invite: string) => invite.replace(/X-WhatsApp-Business-Number: [^\n]*\n/, '');


describe('sandbox (built-in YCloud simulator and browser phone)', function () {
  let sandbox: Sandbox;

  before(async function () {
    if (!infra.drachtio) {
      console.log(`      !!! SKIPPED: ${infra.drachtioMissing}`);
      this.skip();
    }
    sandbox = await startSandbox({ ...infraEnv(), NODE_ID: 'sandbox-test', PBX_TARGET: '' }, createLogger(process.env.LOG_LEVEL ?? 'silent'));
  });
  after(async () => {
    await sandbox?.stop();
  });

  it("the simulator's webhooks pass the bridge's signature check, and forged ones do not", async () => {
    const { sim } = sandbox;
    const event = sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wabaId: '1', wacid: 'wacid.sandbox-check', status: 'RINGING' } });
    assert.equal(await sim.deliver(event), 200);
    const forged = sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wabaId: '1', wacid: 'wacid.sandbox-forged', status: 'RINGING' } });
    assert.equal(await sim.deliver(forged, { signature: signWebhook('not-the-secret', JSON.stringify(forged)) }), 401);
    assert.equal(await sim.deliver(forged, { signature: null }), 401);
  });

  it('serves the phone at /sandbox', async () => {
    const res = await fetch(sandbox.url);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /phone\.js/);
  });

  it("refuses the page's bad requests with 400 and a reason, and carries on", async () => {
    const post = (p: string, body: string) => fetch(new URL(p, sandbox.url), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    const cases: Array<[string, string, RegExp]> = [
      ['/sandbox/api/calls', '{"sdp":"not an SDP"}', /sdp/],
      ['/sandbox/api/calls', '{not json', /JSON/],
      ['/sandbox/api/calls', '[1,2]', /JSON object/],
      ['/sandbox/api/calls/wacid.nope/accept', '{}', /no agent call/],
      ['/sandbox/api/calls/wacid.nope/hangup', '{}', /no live call/],
      ['/sandbox/api/calls/wacid.nope/explode', '{}', /unknown action/],
      ['/sandbox/api/permissions/wamid.nope', '{"choice":"temporary"}', /no permission request/],
      ['/sandbox/api/permissions/wamid.nope', '{"choice":"sure"}', /choice/],
    ];
    for (const [p, body, reason] of cases) {
      const res = await post(p, body);
      assert.equal(res.status, 400, `${p} ${body}`);
      assert.match(((await res.json()) as { error: string }).error, reason, `${p} ${body}`);
    }
    assert.equal((await fetch(sandbox.url)).status, 200);
  });

  describe('in a real browser', function () {
    let browser: BrowserHandle;
    let page: Page;

    before(async function () {
      const problem = BrowserWaUser.available() ? BrowserWaUser.isolationProblem() : 'no Chromium at /usr/bin/chromium';
      if (problem) {
        console.log(`      !!! SKIPPED: ${problem}`);
        this.skip();
      }
      browser = await BrowserWaUser.launch({ toneHz: MIC_HZ });
    });
    beforeEach(async () => {
      page = await browser.browser.newPage();
      await page.goto(`${sandbox.url}${PAGE_QUERY}`, { waitUntil: 'load', timeout: 15000 });
      await until('the page is idle and connected', async () => (await phoneState(page)) === 'idle' && sandbox.phone.pages > 0, 10000);
    });
    afterEach(async () => {
      await page?.close().catch(() => undefined);
    });
    after(async () => {
      await browser?.close();
    });

    it('calls the demo agent: greeting, echo, digits read back, hang-up, CDR in the timeline', async function () {
      this.timeout(90000);
      const dump = async () => `state=${await phoneState(page)} timeline=${JSON.stringify(await page.$eval('[data-testid="timeline"]', (e) => (e.textContent ?? '').slice(-1500)))}`;
      await page.click('[data-testid="call-business"]');
      await until('the call is connected', async () => (await phoneState(page)) === 'connected', 20000, dump);
      const wacid = await phoneWacid(page);
      assert.match(wacid, /^wacid\./);
      const t0 = Date.now();
      await installMeter(page, [MIC_HZ]);

      // The greeting: loud audio that is not the caller's tone.
      const greeting = await until('the greeting is heard', async () => {
        const f = await frames(page, t0, 0);
        return f.speech >= 25 ? f : null;
      }, 15000, async () => JSON.stringify(await frames(page, t0, 0)));
      assert.ok(greeting.speech >= 25);
      // Then the caller's own voice (the fake microphone's tone) comes back.
      const echoed = await until('the echo of the caller is heard', async () => {
        const f = await frames(page, t0, 0);
        return f.tone >= 25 ? f : null;
      }, 20000, async () => JSON.stringify(await frames(page, t0, 0)));
      assert.ok(echoed.tone >= 25);

      // Digits from the keypad (RFC 4733 inside SRTP): the demo agent reports them and reads them back.
      await page.click('[data-testid="keypad"]');
      const beforeDigits = Date.now();
      for (const k of ['1', '2', '3']) {
        await page.click(`[data-testid="key-${k}"]`);
        await until(`digit ${k} reported by the demo agent`, async () => (await timelineRows(page, 'demo')).some((t) => new RegExp(`digit ${k}\\b`).test(t)), 10000, dump);
      }
      const readBack = await until('the digits are read back', async () => {
        const f = await frames(page, beforeDigits, 0);
        return f.speech >= 10 ? f : null;
      }, 10000);
      assert.ok(readBack.speech >= 10);

      // Hang up: WhatsApp's terminate, the bridge's BYE to the demo agent, the CDR row in the timeline.
      await page.click('[data-testid="hangup"]');
      const cdr = await cdrRow(page, wacid, dump);
      assert.match(cdr, /inbound/);
      assert.match(cdr, /answered|completed/);
      // Shown as a summary a person reads, the stored row folded under it.
      const shown = await cdrShown(page, wacid);
      assert.match(shown.summary, new RegExp(`Call${USER.replace('+', '\\+')} called ${BUSINESS.replace('+', '\\+')}, answered by `), shown.summary);
      assert.match(shown.summary, /Outcomeanswered · ended by whatsapp/, shown.summary);
      assert.match(shown.summary, /Timeanswered after [\d.]+ s, talked [\d.]+ s/, shown.summary);
      assert.equal(shown.rawOpen, false, 'the raw row is folded');
      assert.ok(shown.rawRows > 20, `the raw row has every column (${shown.rawRows})`);
      const webhooks = await timelineRows(page, 'webhook');
      assert.ok(webhooks.some((t) => /whatsapp\.call\.connect.*200/.test(t)), webhooks.join('\n'));
      assert.ok(webhooks.some((t) => /whatsapp\.call\.terminate/.test(t)), webhooks.join('\n'));
      const api = await timelineRows(page, 'api');
      assert.ok(api.some((t) => /calls\/preAccept.*200/.test(t)) && api.some((t) => /calls\/accept.*200/.test(t)), api.join('\n'));
      assert.ok((await timelineRows(page, 'sip')).some((t) => /invite_sent/.test(t)));
      const row = await sandbox.bridge.cdr.findCallByWacid(wacid);
      assert.equal(row?.direction, 'inbound');
      assert.ok(row?.ended_at);
    });

    it("an agent's call rings the page, the permission prompt is answered, and the call connects with audio", async function () {
      this.timeout(90000);
      const target = `127.0.0.1:${infra.drachtio!.sipPort}`;
      // No permission yet: the bridge refuses the agent (403) and asks the user, as WhatsApp requires.
      const refused = await runSippUac(await refusalScenario(403, undefined, withoutBusinessHeader), { target, number: USER });
      assert.equal(await refused.done, 0, refused.proc.output);
      await until('the permission prompt shows', async () => (await page.$('[data-testid="permission-temporary"]')) !== null, 10000);
      const granted = new Promise<void>((resolve) => sandbox.sim.once('webhook', () => resolve()));
      await page.click('[data-testid="permission-temporary"]');
      await granted;
      await until('the grant is recorded', async () => (await sandbox.bridge.permissions.check(BUSINESS, USER)).allowed, 5000);

      const phone = new RtpPhone(AGENT_HZ, MIC_HZ);
      const rtpPort = await phone.start();
      try {
        const agent = await runSippUac('uac-sandbox-call.xml', { target, number: USER, rtpPort });
        await until('the page rings', async () => (await phoneState(page)) === 'ringing-in', 15000);
        const wacid = await phoneWacid(page);
        await page.click('[data-testid="accept"]');
        await until('the call is connected', async () => (await phoneState(page)) === 'connected', 15000);
        const t0 = Date.now();
        await installMeter(page, [AGENT_HZ]);
        // Both ways: the page hears the agent's tone, the agent's phone the page's microphone.
        await until("the page hears the agent", async () => ((await frames(page, t0, 0)).tone >= 25), 15000, async () => JSON.stringify(await frames(page, t0, 0)));
        await withTimeout(phone.heard.whenHeard(25), 15000, `the agent heard ${phone.heard.framesWithTone} frames of ${MIC_HZ} Hz`);
        assert.equal(await agent.done, 0, agent.proc.output);
        await until('the page shows the end', async () => ['ended', 'idle'].includes(await phoneState(page)), 10000);
        const cdr = await cdrRow(page, wacid);
        assert.match(cdr, /outbound/);
        assert.match(cdr, /answered/);
      } finally {
        phone.stop();
      }
    });

    it("the page declines an agent's call: the agent gets 603 Decline, the CDR says rejected", async function () {
      this.timeout(60000);
      // The permission granted in the previous test still holds.
      assert.ok((await sandbox.bridge.permissions.check(BUSINESS, USER)).allowed);
      const agent = await runSippUac(await refusalScenario(603, 'cause=21', withoutBusinessHeader), { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: USER });
      await until('the page rings', async () => (await phoneState(page)) === 'ringing-in', 15000);
      const wacid = await phoneWacid(page);
      assert.match(wacid, /^wacid\./);
      await page.click('[data-testid="decline"]');
      assert.equal(await agent.done, 0, agent.proc.output);
      const cdr = await cdrRow(page, wacid);
      assert.match(cdr, /outbound/);
      assert.match(cdr, /rejected/);
      assert.match(cdr, /603/);
    });

    it('orders the timeline by time: a row that comes late goes where its time puts it', async () => {
      const t = Date.now();
      sandbox.phone.timeline({ at: t, kind: 'info', title: 'order check: second' });
      sandbox.phone.timeline({ at: t - 5000, kind: 'info', title: 'order check: first, sent late' });
      sandbox.phone.timeline({ at: t + 1, kind: 'info', title: 'order check: third' });
      const titles = await until('the rows are shown', async () => {
        const rows = (await timelineRows(page, 'info')).filter((r) => r.includes('order check'));
        return rows.length === 3 ? rows : null;
      }, 5000);
      assert.deepEqual(titles.map((r) => /order check: (\w+)/.exec(r)![1]), ['first', 'second', 'third']);
      const ats = (await page.$$eval('[data-testid="timeline"] > li', (rows) => rows.map((r) => Number(r.dataset.at)))) as number[];
      assert.deepEqual(ats, [...ats].sort((a, b) => a - b), 'every row in time order, the history included');
    });

    it('shows a permission prompt sent while no page was open to the page opened later; answered, it goes from every page', async function () {
      this.timeout(30000);
      await page.close();
      await until('no page is open', async () => sandbox.phone.pages === 0, 5000);
      const customer = '+15550100009';
      const route = sandbox.bridge.numbers.byNumber(BUSINESS)!;
      const asked = new Promise<SimPermissionRequest>((resolve) => sandbox.sim.once('permission-request', resolve));
      await route.provider.requestPermission(route.line, customer, { kind: 'interactive', text: 'May we call you about the late prompt?' });
      await asked;
      const open = async () => {
        const p = await browser.browser.newPage();
        await p.goto(`${sandbox.url}${PAGE_QUERY}`, { waitUntil: 'load', timeout: 15000 });
        return p;
      };
      page = await open();
      const second = await open();
      try {
        for (const p of [page, second]) {
          await until('the prompt shows', async () => (await p.$eval('#permission-text', (e) => ((e.closest('[hidden]') ? '' : e.textContent) ?? '')).catch(() => '')).includes('late prompt') || null, 10000);
        }
        const answered = new Promise<void>((resolve) => sandbox.sim.once('webhook', () => resolve()));
        // The first page's tab in front (a background tab's click would wait for it to be seen).
        await page.bringToFront();
        await page.click('[data-testid="permission-decline"]');
        await answered;
        await until('the other page takes the prompt down', async () => (await second.$eval('#permission', (e) => e.hidden)) || null, 5000);
      } finally {
        await second.close();
      }
    });
  });
});

describe('sandbox with PBX_TARGET: a real Asterisk (config/asterisk samples) instead of the demo agent', function () {
  this.timeout(120000);
  const bin = findAsterisk();
  let pbx: Asterisk | null = null;
  let sandbox: Sandbox | null = null;
  let browser: BrowserHandle | null = null;
  let page: Page;
  const secrets = { bridgeToPbx: 'sbx-b2p-5c1e', pbxToBridge: 'sbx-p2b-9a7d' };
  // Another WhatsApp user than the first sandbox's, who has given no permission yet.
  const user = '+15550100002';

  before(async function () {
    const missing = !infra.drachtio ? infra.drachtioMissing
      : !bin ? 'asterisk not found (set ASTERISK_BIN or put `asterisk` on PATH)'
        : !BrowserWaUser.available() ? 'no Chromium at /usr/bin/chromium' : BrowserWaUser.isolationProblem();
    if (missing) {
      console.log(`      !!! SKIPPED: ${missing}`);
      return this.skip();
    }
    // The sample's agent rings [wa-lab]: an IVR that reads up to 4 digits (ended by #), then echoes.
    pbx = await new Asterisk(bin!, {
      values: { bridgeIp: '127.0.0.1', bridgeSipPort: infra.drachtio!.sipPort, bridgeToPbxSecret: secrets.bridgeToPbx, pbxToBridgeSecret: secrets.pbxToBridge, businessNumber: BUSINESS },
      agents: 'Local/agent@wa-lab',
      lab: ['exten => agent,1,Answer()', ' same => n,Read(DIGITS,,4,,,20)', ' same => n,Verbose(1,IVR-DIGITS=${DIGITS}=END)', ' same => n,Echo()'],
    }).start();
    sandbox = await startSandbox({
      ...infraEnv(), NODE_ID: 'sandbox-asterisk-test', PBX_TARGET: pbx.uri, SANDBOX_USER_NUMBER: user,
      PBX_AUTH_USERNAME: SAMPLE_USERNAMES.bridgeToPbx, PBX_AUTH_PASSWORD: secrets.bridgeToPbx,
      SIP_AUTH_USERNAME: SAMPLE_USERNAMES.pbxToBridge, SIP_AUTH_PASSWORD: secrets.pbxToBridge,
    }, createLogger(process.env.LOG_LEVEL ?? 'silent'));
    browser = await BrowserWaUser.launch({ toneHz: MIC_HZ });
    page = await browser.browser.newPage();
    await page.goto(`${sandbox.url}${PAGE_QUERY}`, { waitUntil: 'load', timeout: 15000 });
    await until('the page is idle and connected', async () => (await phoneState(page)) === 'idle' && sandbox!.phone.pages > 0, 10000);
  });
  after(async () => {
    await browser?.close();
    await sandbox?.stop();
    await pbx?.stop();
  });

  it("the page calls the team's PBX: its IVR gets the keypad's digits, then its echo is heard", async () => {
    await page.click('[data-testid="call-business"]');
    await until('the call is connected', async () => (await phoneState(page)) === 'connected', 20000);
    const wacid = await phoneWacid(page);
    await page.click('[data-testid="keypad"]');
    for (const k of ['1', '5', '9', 'pound']) await page.click(`[data-testid="key-${k}"]`);
    const m = await pbx!.waitForLog(/IVR-DIGITS=([0-9*#]*)=END/, 15000);
    assert.equal(m[1], '159', "Asterisk's Read() got the digits pressed on the page");
    const t0 = Date.now();
    await installMeter(page, [MIC_HZ]);
    await until("the caller's echo from Asterisk", async () => ((await frames(page, t0, 0)).tone >= 25), 15000, async () => JSON.stringify(await frames(page, t0, 0)));
    await page.click('[data-testid="hangup"]');
    const cdr = await cdrRow(page, wacid);
    assert.match(cdr, /inbound/);
    assert.ok(cdr.includes(pbx!.uri), cdr);
  });

  it("an agent dials the WhatsApp user from Asterisk (9 + number): permission asked on the page, then the page rings and hears the agent's side", async () => {
    const dial = () => pbx!.originate({ channel: `Local/9${user.slice(1)}@agents`, application: 'Echo', callerId: '"Agent 201" <201>' });
    await pbx!.bridgeReachable();
    await dial();
    await until('the permission prompt shows', async () => (await page.$('[data-testid="permission-permanent"]')) !== null, 15000);
    await page.click('[data-testid="permission-permanent"]');
    await until('the grant is recorded', async () => (await sandbox!.bridge.permissions.check(BUSINESS, user)).allowed, 5000);
    await dial();
    await until('the page rings', async () => (await phoneState(page)) === 'ringing-in', 15000);
    const wacid = await phoneWacid(page);
    await page.click('[data-testid="accept"]');
    await until('the call is connected', async () => (await phoneState(page)) === 'connected', 15000);
    const t0 = Date.now();
    await installMeter(page, [MIC_HZ]);
    // The agent's side echoes: the page hears its own microphone back through Asterisk.
    await until('the page hears the agent side', async () => ((await frames(page, t0, 0)).tone >= 25), 15000, async () => JSON.stringify(await frames(page, t0, 0)));
    await page.click('[data-testid="hangup"]');
    const cdr = await cdrRow(page, wacid);
    assert.match(cdr, /outbound/);
    assert.match(cdr, /agent201/);
    assert.match(cdr, /answered/);
  });
});

describe('sandbox start-up', () => {
  const main = path.join(__dirname, '..', 'src', 'sandbox', 'main.js');
  const run = (env: Record<string, string>) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [main], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), 15000);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });

  it('serves no sandbox routes on a bridge not in sandbox mode', async () => {
    // After the sandbox has stopped: one bridge per process at a time (the CDR models are bound to the last one started).
    const bridge = await startStack();
    try {
      for (const p of ['/sandbox', '/sandbox/events', '/sandbox/phone.js']) {
        const r = await fetch(`http://127.0.0.1:${bridge.bridge.httpPort}${p}`);
        assert.equal(r.status, 404, `${p} on a bridge not in sandbox mode`);
      }
      const post = await fetch(`http://127.0.0.1:${bridge.bridge.httpPort}/sandbox/api/calls`, { method: 'POST', body: '{}' });
      assert.equal(post.status, 404);
    } finally {
      await bridge.stop();
    }
  });

  it("keeps a user's call permission across a restart, as WhatsApp does (the simulator learns it from the bridge's records)", async () => {
    const env = { ...infraEnv(), NODE_ID: 'sandbox-restart-test', PBX_TARGET: 'sip:127.0.0.1:9', SANDBOX_USER_NUMBER: '+15550100003' };
    const log = createLogger(process.env.LOG_LEVEL ?? 'silent');
    const first = await startSandbox(env, log);
    await grantPermanentPermission(first.bridge.permissions, BUSINESS, '+15550100003');
    await first.stop();
    const again = await startSandbox(env, log);
    try {
      const connect = (to: string) => fetch(`${again.sim.baseUrl}/whatsapp/calls/connect`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', 'X-API-Key': again.sim.apiKey },
        body: JSON.stringify({ from: BUSINESS, to, sdpType: 'offer', sdp: 'v=0\r\n' }),
      });
      assert.equal((await connect('+15550100003')).status, 200);
      const refused = await connect('+15550100004');
      assert.equal(refused.status, 400);
      assert.equal(((await refused.json()) as { error: { whatsappApiError: { code: number } } }).error.whatsappApiError.code, 138006);
    } finally {
      await again.stop();
    }
  });

  it('with --provider meta: the simulator speaks Meta\'s Graph API, a user\'s call reaches the demo agent (its echo heard), and the timeline shows Meta\'s webhooks and calls', async function () {
    if (!infra.drachtio) return this.skip();
    this.timeout(45000);
    const meta = await startSandbox({ ...infraEnv(), NODE_ID: 'sandbox-meta-test', PBX_TARGET: '', WA_PROVIDER: 'meta' }, createLogger(process.env.LOG_LEVEL ?? 'silent'));
    const user = new WaUser(MIC_HZ, MIC_HZ);
    try {
      assert.equal(meta.sim.face, 'meta');
      const { wacid, status } = await meta.sim.userCalls(user);
      assert.equal(status, 200);
      // The demo agent echoes what it hears: the user's own tone comes back.
      await user.heard.whenHeard(25);
      assert.ok(meta.sim.requests.some((r) => r.op === 'accept' && r.wacid === wacid && /\/calls$/.test(r.path)), 'accepted through Graph\'s /{phone-id}/calls');
      await meta.sim.userHangsUp(wacid);
      // What a page opened now is given: the history, with Meta's webhooks and Graph calls in it.
      const ac = new AbortController();
      const res = await fetch(new URL('/sandbox/events', meta.url), { signal: ac.signal });
      const reader = res.body!.getReader();
      let text = '';
      await until('the timeline shows the Meta webhooks', async () => {
        const { value } = await reader.read();
        text += Buffer.from(value ?? new Uint8Array()).toString();
        return /calls:connect/.test(text) && /POST \/\d+\/calls/.test(text) ? text : null;
      }, 10000, async () => text.slice(-1500));
      ac.abort();
    } finally {
      user.close();
      await meta.stop();
    }
  });

  it('refuses to start with a real YCloud API key, before starting anything', async () => {
    const r = await run({ YCLOUD_API_KEY: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /refuses to start/);
    assert.match(r.stderr, /YCLOUD_API_KEY/);
    assert.doesNotMatch(r.stderr, /a1b2c3d4e5f6/, 'the key itself is never printed');
  });

  it('refuses to send to YCloud itself', async () => {
    const r = await run({ YCLOUD_API_BASE_URL: 'https://api.ycloud.com/v2' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /YCLOUD_API_BASE_URL/);
  });

  it("a Postgres that refuses the sandbox's credentials stops it at once, naming Postgres and DATABASE_URL", async () => {
    const url = new URL(infra.databaseUrl);
    url.username = 'wasb_no_such_role';
    url.password = 'not-the-password';
    url.pathname = '/wasb_sandbox_nobody';
    const started = Date.now();
    const r = await run({ DATABASE_URL: url.toString() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /Postgres refused the sandbox's DATABASE_URL \(postgres:\/\/wasb_no_such_role:\*\*\*@/, r.stderr);
    assert.doesNotMatch(r.stderr, /not-the-password/);
    assert.ok(Date.now() - started < 10000, `reported at once, not retried (${Date.now() - started} ms)`);
  });

  it('--listen ADDRESS: the page is served there, and the media the browser is given is on that address (127.0.0.2 standing in for a LAN address)', async function () {
    if (!infra.drachtio) return this.skip();
    const problem = BrowserWaUser.available() ? BrowserWaUser.isolationProblem() : 'no Chromium at /usr/bin/chromium';
    if (problem) {
      console.log(`      !!! SKIPPED: ${problem}`);
      return this.skip();
    }
    this.timeout(90000);
    const log = createLogger(process.env.LOG_LEVEL ?? 'silent');
    // As main.js does: the sandbox's own rtpengine (its WhatsApp side on the address), then the sandbox.
    const base: Record<string, string | undefined> = infraEnv();
    delete base.RTPENGINE_NG;
    delete base.RTPENGINE_DTMF_LOG;
    const env = { ...base, NODE_ID: 'sandbox-lan-test', PBX_TARGET: '', SANDBOX_HOST: '127.0.0.2', SANDBOX_USER_NUMBER: '+15550100005' };
    const services = await startLocalServices(env, log);
    let lan: Sandbox | null = null;
    let browser: BrowserHandle | null = null;
    try {
      lan = await startSandbox({ ...env, ...services.env }, log);
      assert.match(lan.url, /^http:\/\/127\.0\.0\.2:\d+\/sandbox$/);
      assert.equal(lan.bridge.config.httpHost, '127.0.0.2');
      assert.equal(lan.bridge.config.publicIp, '127.0.0.2');
      // Only there: not on 127.0.0.1.
      const port = new URL(lan.url).port;
      await assert.rejects(fetch(`http://127.0.0.1:${port}/sandbox`), /fetch failed/);
      browser = await BrowserWaUser.launch({ toneHz: MIC_HZ });
      const p = await browser.browser.newPage();
      await p.goto(`${lan.url}${PAGE_QUERY}`, { waitUntil: 'load', timeout: 15000 });
      await until('the page is idle and connected', async () => (await phoneState(p)) === 'idle' && lan!.phone.pages > 0, 10000);
      await p.click('[data-testid="call-business"]');
      await until('the call is connected', async () => (await phoneState(p)) === 'connected', 20000);
      const wacid = await phoneWacid(p);
      // The SDP the page was given (the bridge's answer, through the simulator): its address and candidates are 127.0.0.2.
      const answer = lan.sim.requestsFor(wacid).map((r) => r.sdp ?? '').find((sdp) => sdp.startsWith('v=0'));
      assert.ok(answer, JSON.stringify(lan.sim.requestsFor(wacid).map((r) => r.op)));
      assert.match(answer, /^c=IN IP4 127\.0\.0\.2\r?$/m);
      const candidates = answer.match(/^a=candidate:.*$/gm) ?? [];
      assert.ok(candidates.length > 0 && candidates.every((c) => c.includes(' 127.0.0.2 ')), candidates.join('\n'));
      assert.doesNotMatch(answer, /127\.0\.0\.1/);
      // And media flows: the demo agent's echo of the page's tone comes back.
      const t0 = Date.now();
      await installMeter(p, [MIC_HZ]);
      await until('the echo of the caller is heard', async () => ((await frames(p, t0, 0)).tone >= 25) || null, 20000, async () => JSON.stringify(await frames(p, t0, 0)));
      await p.click('[data-testid="hangup"]');
      await until('the call ends', async () => ['ended', 'idle'].includes(await phoneState(p)) || null, 10000);
    } finally {
      await browser?.close();
      await lan?.stop();
      await services.stop();
    }
  });

  it('--listen refuses what is not one of this machine\'s addresses', async () => {
    for (const bad of ['0.0.0.0', 'sandbox.example']) {
      const r = await run({ SANDBOX_HOST: bad });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /SANDBOX_HOST \(--listen\)/);
    }
  });
});

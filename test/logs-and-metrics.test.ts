import assert from 'node:assert/strict';
import { rows } from './harness/db-rows';
import { deliverAndProcess, startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { parsePromText, Sample, sampleSum } from './harness/prom-text';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { callParts } from './harness/call-parts';
import { whenEnded } from './harness/watch';

const BUSINESS = '+6283138205150';
const CUSTOMER = '+6281361905133';
const USER_TONE = 440;
const AGENT_TONE = 1000;

/** Secrets chosen so that any appearance in the output can only be a leak. */
const SECRETS = {
  apiKey: 'ycloud-key-Zq8vW3xR7pL2',
  webhookSecret: 'whsec-Hn4Kt9Bf2Yc6Jm1',
  adminToken: 'admin-token-Vd5Gs8Qw3Ex7Rz0',
  metricsToken: 'metrics-token-Pa2Lk6Nc9Ub4',
  pbxPassword: 'pbx-pass-Ty7Ui3Op1As5',
  sipPassword: 'sip-pass-Df8Gh2Jk4Lz6',
  drachtioSecret: 'drachtio-secret-Xc3Vb7Nm1Q',
};

/** The bridge's log, line by line (pino writes each line whole). */
class LogCapture {
  readonly text: string[] = [];
  write(s: string): void {
    this.text.push(s);
  }
  get all(): string {
    return this.text.join('');
  }
  lines(): Array<Record<string, unknown>> {
    return this.all.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

async function scrape(stack: TestStack, token: string | null = SECRETS.metricsToken): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/metrics`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal(res.status, 200);
  return parsePromText(await res.text());
}

/** Polls /metrics until `check` passes (counters may move just after the HTTP answer that caused them). */
async function eventually(stack: TestStack, check: (s: Sample[]) => void, ms = 3000): Promise<Sample[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await scrape(stack);
    try {
      check(s);
      return s;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * For each call in the log (by callId): wacid and sipCallId, once a line has carried them, are on
 * every later line of that call; returns each call's lines.
 */
function callLines(lines: Array<Record<string, unknown>>): Map<string, Array<Record<string, unknown>>> {
  const byCall = new Map<string, Array<Record<string, unknown>>>();
  for (const l of lines) {
    if (typeof l.callId !== 'string') continue;
    const list = byCall.get(l.callId) ?? [];
    list.push(l);
    byCall.set(l.callId, list);
  }
  for (const [id, list] of byCall) {
    for (const field of ['wacid', 'sipCallId']) {
      const first = list.findIndex((l) => typeof l[field] === 'string' && l[field] !== '');
      if (first < 0) continue;
      const missing = list.slice(first).filter((l) => typeof l[field] !== 'string' || l[field] === '');
      assert.deepEqual(missing, [], `call ${id}: every line after ${field} was known carries it`);
    }
  }
  return byCall;
}

function assertNoSecrets(capture: LogCapture, extra: string[] = []): void {
  const out = capture.all;
  assert.ok(out.length > 0, 'the bridge logged something');
  for (const s of [...Object.values(SECRETS), ...extra]) assert.ok(!out.includes(s), `secret ${s.slice(0, 8)}… appears in the log`);
}

describe('logs and metrics', function () {
  this.timeout(60000);

  describe('without SIP: /metrics, webhooks, YCloud and permission requests', () => {
    let stack: TestStack;
    const log = new LogCapture();
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api${path}`, { ...init, headers: { Authorization: `Bearer ${SECRETS.adminToken}`, 'Content-Type': 'application/json' } });

    before(async () => {
      stack = await startStack({
        LOG_LEVEL: 'debug',
        METRICS_TOKEN: SECRETS.metricsToken,
        ADMIN_API_TOKEN: SECRETS.adminToken,
        WA_BUSINESS_NUMBER: BUSINESS,
        WA_WABA_ID: '188234691048809',
        PBX_AUTH_USERNAME: 'wa-bridge',
        PBX_AUTH_PASSWORD: SECRETS.pbxPassword,
        SIP_AUTH_USERNAME: 'pbx',
        SIP_AUTH_PASSWORD: SECRETS.sipPassword,
        SIP_TRUSTED_SOURCES: '127.0.0.0/8',
        ...(infra.drachtio ? {} : { DRACHTIO_SECRET: SECRETS.drachtioSecret }),
      }, { logStream: log, apiKey: SECRETS.apiKey, webhookSecret: SECRETS.webhookSecret });
    });
    after(async () => {
      await stack?.stop();
    });

    it('GET /metrics needs the bearer token when METRICS_TOKEN is set, and serves the Prometheus text format', async () => {
      const url = `http://127.0.0.1:${stack.bridge.httpPort}/metrics`;
      assert.equal((await fetch(url)).status, 401);
      assert.equal((await fetch(url, { headers: { Authorization: 'Bearer wrong' } })).status, 401);
      assert.equal((await fetch(url, { headers: { Authorization: SECRETS.metricsToken } })).status, 401);
      assert.equal((await fetch(url, { headers: { Authorization: `Bearer ${SECRETS.adminToken}` } })).status, 401, 'the admin token is not the metrics token');
      const res = await fetch(url, { headers: { Authorization: `Bearer ${SECRETS.metricsToken}` } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, /^# TYPE wasb_calls_total counter$/m);
      assert.match(text, /^process_resident_memory_bytes /m);
      assert.equal((await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api/metrics`, { headers: { Authorization: `Bearer ${SECRETS.metricsToken}` } })).status === 200, false);
      // rtpengine is pinged from start-up on: its round trips are counted.
      assert.ok(sampleSum(parsePromText(text), 'wasb_rtpengine_commands_total', { command: 'ping', result: 'ok' }) >= 1);
      assert.equal(sampleSum(parsePromText(text), 'wasb_drachtio_connected'), infra.drachtio ? 1 : 0);
    });

    it('webhook events by type and result', async () => {
      const status = () => stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: 'wacid.metrics', status: 'RINGING' } });
      const ev = status();
      assert.equal(await deliverAndProcess(stack, ev), 200);
      assert.equal(await stack.sim.deliver(ev), 200); // duplicate
      assert.equal(await stack.sim.deliver(status(), { secret: 'forged' }), 401);
      assert.equal(await stack.sim.deliver(status(), { signature: null }), 401);
      assert.equal(await stack.sim.deliver(status(), { timestamp: Math.floor(Date.now() / 1000) - 3600 }), 401);
      // Signed but never valid: quarantined and answered 202 (YCloud redelivers any non-2xx), counted as malformed.
      assert.equal(await stack.sim.deliver(null, { raw: '{not json' }), 202);
      assert.equal(await stack.sim.deliver(stack.sim.event('whatsapp.call.connect', { callingConnect: { wacid: 'w', from: 'nobody', sdp: 'x' } })), 202);
      assert.equal(await stack.sim.deliver(stack.sim.event('whatsapp.message.updated', { whatsappMessage: { id: 'm1' } })), 200);
      assert.equal(await stack.sim.deliver(stack.sim.event(`custom.${Date.now()}`, {})), 200);
      const reply = stack.sim.event('whatsapp.inbound_message.received', {
        whatsappInboundMessage: {
          id: 'm1', wamid: 'wamid.metrics', from: '+6281300000999', to: BUSINESS, sendTime: new Date().toISOString(),
          type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'reject', response_source: 'user_action' } },
        },
      });
      assert.equal(await deliverAndProcess(stack, reply), 200);
      const s = await eventually(stack, (x) => assert.equal(sampleSum(x, 'wasb_webhook_events_total', { result: 'processed' }), 2));
      const n = (type: string, result: string) => sampleSum(s, 'wasb_webhook_events_total', { type, result });
      assert.equal(n('whatsapp.call.status.updated', 'processed'), 1);
      assert.equal(n('whatsapp.call.status.updated', 'duplicate'), 1);
      assert.equal(n('whatsapp.inbound_message.received', 'processed'), 1);
      assert.equal(n('unknown', 'bad_signature'), 2);
      assert.equal(n('unknown', 'stale'), 1);
      assert.equal(n('unknown', 'malformed'), 1);
      assert.equal(n('whatsapp.call.connect', 'malformed'), 1);
      assert.equal(n('other', 'ignored'), 2, 'types outside the known set are counted as "other"');
      assert.equal(sampleSum(s, 'wasb_permission_replies_total', { response: 'reject' }), 1);
      assert.ok(!s.some((x) => x.name === 'wasb_webhook_events_total' && /custom|message\.updated/.test(x.labels.type ?? '')));
    });

    it('permission requests and settings through the API count YCloud requests by endpoint and result', async () => {
      const send = (to: string) => api('/permission-requests', { method: 'POST', body: JSON.stringify({ to, text: 'May we call you?' }) });
      assert.equal((await send('+6281300000111')).status, 202);
      stack.sim.failNext('/messages/sendDirectly', { status: 429, code: 'TOO_MANY_REQUESTS', message: 'slow down' });
      assert.equal((await send('+6281300000112')).status, 502);
      stack.sim.failNext('/messages/sendDirectly', { status: 500, code: 'INTERNAL', message: 'oops' });
      assert.equal((await send('+6281300000113')).status, 502);
      assert.equal((await api('/settings')).status, 200);
      const s = await scrape(stack);
      const y = (endpoint: string, result: string) => sampleSum(s, 'wasb_ycloud_requests_total', { endpoint, result });
      assert.equal(y('send_message', 'ok'), 1);
      assert.equal(y('send_message', 'http_4xx'), 1);
      assert.equal(y('send_message', 'http_5xx'), 1);
      assert.equal(y('settings_get', 'ok'), 1);
      assert.equal(sampleSum(s, 'wasb_ycloud_request_seconds_count', { endpoint: 'send_message' }), 3);
      assert.equal(sampleSum(s, 'wasb_permission_requests_total', { source: 'api', result: 'sent' }), 1);
      assert.equal(sampleSum(s, 'wasb_permission_requests_total', { source: 'api', result: 'rate_limited' }), 1);
      assert.equal(sampleSum(s, 'wasb_permission_requests_total', { source: 'api', result: 'failed' }), 1);
      assert.ok(!s.some((x) => /phoneNumbers|188234691048809/.test(JSON.stringify(x.labels))), 'no URL or id in a label');
    });

    it('a WhatsApp call that cannot be bridged: counted by direction and outcome, its log lines carry callId and wacid', async () => {
      const before = sampleSum(await scrape(stack), 'wasb_calls_total', { direction: 'inbound', outcome: 'failed' });
      const user = { createOffer: async () => 'v=0\r\nthis is not sdp\r\n', applyAnswer: async () => undefined };
      const { wacid } = await stack.sim.userCalls(user);
      const id = await whenEnded(stack.bridge, wacid);
      await stack.sim.waitForRequest('/calls/reject', wacid);
      const s = await eventually(stack, (x) => assert.equal(sampleSum(x, 'wasb_ycloud_requests_total', { endpoint: 'reject', result: 'ok' }), 1));
      assert.equal(sampleSum(s, 'wasb_calls_total', { direction: 'inbound', outcome: 'failed' }), before + 1);
      assert.equal(sampleSum(s, 'wasb_calls_in_progress'), 0);
      const lines = callLines(log.lines()).get(id) ?? [];
      assert.ok(lines.length >= 2, `the call logged (${lines.length} lines)`);
      for (const l of lines) assert.equal(l.wacid, wacid, 'an inbound call\'s wacid is known from its first line');
      assert.ok(lines.some((l) => l.msg === 'call ended'));
    });

    it('no secret appears anywhere in the log', () => {
      // Logged requests above carried the admin and metrics tokens, the webhook signatures, the API key.
      assertNoSecrets(log);
    });
  });

  describe('real calls: an inbound and an outbound call through SIP', () => {
    const parts = callParts({ keepStack: true });
    const log = new LogCapture();

    after(async () => {
      await parts.stack?.stop();
    });

    it('logs carry callId, wacid and sipCallId, never a secret; the metrics move with the calls', async () => {
      // The PBX challenges the bridge's INVITE and the bridge challenges the agent's: digest credentials cross both ways.
      parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
      const rtpPort = await parts.phone.start();
      parts.sipp = await startSippUas('uas-auth-challenge.xml', { rtpPort, keys: { authuser: 'wa-bridge', authpass: SECRETS.pbxPassword } });
      const s = (parts.stack = await startStack({
        LOG_LEVEL: 'debug',
        PBX_TARGET: parts.sipp.uri,
        PBX_AUTH_USERNAME: 'wa-bridge',
        PBX_AUTH_PASSWORD: SECRETS.pbxPassword,
        SIP_AUTH_USERNAME: 'pbx',
        SIP_AUTH_PASSWORD: SECRETS.sipPassword,
        SIP_TRUSTED_SOURCES: '127.0.0.0/8',
        WA_BUSINESS_NUMBER: BUSINESS,
        WA_PHONE_ID: '461269257068831',
        METRICS_TOKEN: SECRETS.metricsToken,
        ADMIN_API_TOKEN: SECRETS.adminToken,
      }, { logStream: log, apiKey: SECRETS.apiKey, webhookSecret: SECRETS.webhookSecret }));
      const start = await scrape(s);
      const base = (name: string, labels: Record<string, string> = {}) => sampleSum(start, name, labels);

      // Inbound: the WhatsApp user calls, the agent answers, they talk, the user hangs up.
      parts.user = new WaUser(USER_TONE, AGENT_TONE);
      const { wacid } = await s.sim.userCalls(parts.user);
      await parts.user.heard.whenHeard(25);
      await parts.phone.heard.whenHeard(25);
      const during = await scrape(s);
      assert.equal(sampleSum(during, 'wasb_calls_in_progress', { direction: 'inbound' }), 1, 'one inbound call in progress');
      await s.sim.userHangsUp(wacid);
      const inboundId = await whenEnded(s.bridge, wacid);
      assert.equal(await parts.sipp.done, 0, `SIPp saw the call through:\n${parts.sipp.proc.output.slice(-1500)}`);
      const inbound = (await rows().CallRecord.findByPk(inboundId))!;
      assert.equal(inbound.outcome, 'answered');
      parts.user.close();
      parts.phone.stop();
      await parts.sipp.proc.stop();

      // Outbound: the agent calls the customer (permission granted by a reply webhook), the customer answers, the agent hangs up.
      const reply = s.sim.event('whatsapp.inbound_message.received', {
        whatsappInboundMessage: {
          id: 'm2', wamid: 'wamid.grant', from: CUSTOMER, to: BUSINESS, sendTime: new Date().toISOString(),
          type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'accept', is_permanent: true } },
        },
      });
      assert.equal(await deliverAndProcess(s, reply), 200);
      parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
      const agentRtp = await parts.phone.start();
      parts.user = new WaUser(USER_TONE, AGENT_TONE);
      let outboundDuring: Sample[] | null = null;
      s.sim.outboundScript = async (call) => {
        await s.sim.answeredBy(parts.user!)(call);
        outboundDuring = await scrape(s);
      };
      parts.sipp = await runSippUac('uac-auth-call.xml', {
        target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort: agentRtp, auth: { username: 'pbx', password: SECRETS.sipPassword },
      });
      assert.equal(await parts.sipp.done, 0, `SIPp's call went through:\n${parts.sipp.proc.output.slice(-2000)}`);
      const invite = s.marks.marks.find((m) => m.name === 'invite_received');
      assert.ok(invite, 'the bridge took the agent\'s INVITE');
      const outboundId = await whenEnded(s.bridge, invite.wacid);
      const outbound = (await rows().CallRecord.findByPk(outboundId))!;
      assert.equal(outbound.outcome, 'answered');
      assert.ok(outboundDuring, 'scraped while the outbound call was up');
      assert.equal(sampleSum(outboundDuring!, 'wasb_calls_in_progress', { direction: 'outbound' }), 1, 'one outbound call in progress');

      // Metrics.
      const after = await eventually(s, (x) => {
        assert.equal(sampleSum(x, 'wasb_calls_in_progress'), 0, 'back to 0');
        assert.ok(sampleSum(x, 'wasb_webhook_events_total', { type: 'whatsapp.call.terminate', result: 'processed' }) >= 1);
      });
      const moved = (name: string, labels: Record<string, string> = {}) => sampleSum(after, name, labels) - base(name, labels);
      assert.equal(moved('wasb_calls_total', { direction: 'inbound', outcome: 'answered' }), 1);
      assert.equal(moved('wasb_calls_total', { direction: 'outbound', outcome: 'answered' }), 1);
      assert.equal(moved('wasb_calls_total'), 2);
      for (const step of ['inbound_preaccept', 'inbound_pbx_ringing', 'inbound_accept', 'outbound_connect', 'outbound_answer']) {
        assert.equal(moved('wasb_call_setup_seconds_count', { step }), 1, `set-up step ${step} observed`);
        assert.ok(moved('wasb_call_setup_seconds_sum', { step }) > 0, step);
      }
      for (const endpoint of ['preAccept', 'accept', 'connect', 'terminate']) {
        assert.ok(moved('wasb_ycloud_requests_total', { endpoint, result: 'ok' }) >= 1, `YCloud ${endpoint} counted`);
        assert.ok(moved('wasb_ycloud_request_seconds_count', { endpoint }) >= 1);
      }
      for (const command of ['offer', 'answer', 'delete', 'blockMedia', 'unblockMedia']) {
        assert.ok(moved('wasb_rtpengine_commands_total', { command, result: 'ok' }) >= 2, `rtpengine ${command} counted for both calls`);
      }
      assert.ok(moved('wasb_rtpengine_command_seconds_count', { command: 'offer' }) >= 2);
      for (const type of ['whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received']) {
        assert.ok(moved('wasb_webhook_events_total', { type, result: 'processed' }) >= 1, `${type} webhooks counted`);
      }
      assert.equal(moved('wasb_sip_requests_total', { method: 'INVITE', result: '2xx' }), 1, 'the INVITE to the PBX, answered after the challenge');
      assert.equal(moved('wasb_sip_request_seconds_count', { method: 'INVITE' }), 1);
      assert.equal(moved('wasb_sip_requests_total', { method: 'BYE', result: 'answered' }), 1, 'the bridge\'s BYE to the agent');
      assert.equal(moved('wasb_sip_invites_received_total', { result: 'challenged' }), 1);
      assert.equal(moved('wasb_sip_invites_received_total', { result: 'accepted' }), 1);
      assert.equal(moved('wasb_permission_replies_total', { response: 'accept' }), 1);
      assert.equal(sampleSum(after, 'wasb_drachtio_connected'), 1);
      assert.equal(moved('wasb_drachtio_disconnects_total'), 0);

      // Logs.
      const calls = callLines(log.lines());
      const inLines = calls.get(inboundId) ?? [];
      const outLines = calls.get(outboundId) ?? [];
      assert.ok(inLines.length >= 4, `the inbound call logged (${inLines.length} lines)`);
      assert.ok(outLines.length >= 4, `the outbound call logged (${outLines.length} lines)`);
      for (const l of inLines) assert.equal(l.wacid, wacid, 'inbound: wacid from the first line');
      const inEnd = inLines.find((l) => l.msg === 'call ended')!;
      assert.equal(inEnd.sipCallId, inbound.sip_call_id, 'inbound: the PBX leg\'s Call-ID once the INVITE went out');
      assert.ok(inLines.findIndex((l) => l.sipCallId) <= inLines.findIndex((l) => l.to === 'answered'), 'the Call-ID is there before the PBX answered');
      for (const l of outLines) assert.equal(l.sipCallId, outbound.sip_call_id, 'outbound: the agent\'s Call-ID from the first line');
      const outEnd = outLines.find((l) => l.msg === 'call ended')!;
      assert.equal(outEnd.wacid, outbound.wacid, 'outbound: wacid once YCloud named the call');
      assert.ok(outLines.findIndex((l) => l.wacid) <= outLines.findIndex((l) => l.to === 'accepted'));
      assertNoSecrets(log, [s.bridge.config.drachtio.secret]);
      assert.doesNotMatch(log.all, /response="[0-9a-f]{32}"/, 'no digest response');
    });
  });
});

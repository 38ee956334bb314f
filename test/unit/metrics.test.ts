import assert from 'node:assert/strict';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Marks } from '../../src/metrics/marks';
import { RtpEngine } from '../../src/media/rtpengine';
import { Metrics } from '../../src/metrics/metrics';
import { SetupSteps } from '../../src/metrics/setup-steps';
import { sipResultOf, sipTimer } from '../../src/metrics/sip';
import { YCloudClient } from '../../src/providers/ycloud/client';
import { freePort } from '../harness/processes';
import { parsePromText, sampleSum } from '../harness/prom-text';

const NAMES = [
  'wasb_calls_in_progress', 'wasb_calls_total', 'wasb_call_setup_seconds', 'wasb_ycloud_requests_total', 'wasb_ycloud_request_seconds',
  'wasb_meta_requests_total', 'wasb_meta_request_seconds',
  'wasb_rtpengine_commands_total', 'wasb_rtpengine_command_seconds', 'wasb_sip_requests_total', 'wasb_sip_request_seconds',
  'wasb_sip_invites_received_total', 'wasb_meta_sip_invites_total', 'wasb_drachtio_connected', 'wasb_drachtio_disconnects_total', 'wasb_webhook_events_total',
  'wasb_permission_requests_total', 'wasb_permission_replies_total', 'wasb_call_mos',
];

async function samples(m: Metrics) {
  return parsePromText(await m.text());
}

describe('metrics', () => {
  it('every metric has its name, help text and type; default process metrics are there; registries are separate', async () => {
    const a = new Metrics();
    const b = new Metrics({ defaultMetrics: false });
    const text = await a.text();
    for (const n of NAMES) {
      assert.match(text, new RegExp(`^# HELP ${n} \\S`, 'm'), `${n} has a help text`);
      assert.match(text, new RegExp(`^# TYPE ${n} (counter|gauge|histogram)$`, 'm'));
    }
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
    assert.match(a.contentType, /^text\/plain; version=0\.0\.4/);
    a.callEnded('inbound', 'answered');
    assert.equal(sampleSum(await samples(a), 'wasb_calls_total', { direction: 'inbound', outcome: 'answered' }), 1);
    assert.equal(sampleSum(await samples(b), 'wasb_calls_total', { direction: 'inbound', outcome: 'answered' }), 0, 'two bridges in one process do not share counters');
    assert.doesNotMatch(await b.text(), /process_cpu/);
    // Every direction/outcome pair exists from the start (rate() works from the first call).
    assert.equal((await samples(b)).filter((s) => s.name === 'wasb_calls_total').length, 14);
  });

  it('label values stay inside their sets', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.webhookEvent('whatsapp.call.connect', 'processed');
    m.webhookEvent('attacker.chosen.type.1', 'ignored');
    m.webhookEvent('attacker.chosen.type.2', 'ignored');
    m.webhookEvent('unknown', 'bad_signature');
    m.permissionReply('accept');
    m.permissionReply('maybe');
    m.rtpengineCommand('no-such-command' as never, 'error', 0.01);
    m.callEnded('sideways' as never, 'weird' as never);
    const s = await samples(m);
    const types = new Set(s.filter((x) => x.name === 'wasb_webhook_events_total').map((x) => x.labels.type));
    assert.deepEqual([...types].sort(), ['other', 'unknown', 'whatsapp.call.connect']);
    assert.equal(sampleSum(s, 'wasb_webhook_events_total', { type: 'other', result: 'ignored' }), 2);
    assert.equal(sampleSum(s, 'wasb_permission_replies_total', { response: 'other' }), 1);
    assert.equal(sampleSum(s, 'wasb_rtpengine_commands_total', { command: 'other' }), 1);
    assert.equal(sampleSum(s, 'wasb_calls_total', { direction: 'other', outcome: 'other' }), 1);
  });

  it("Meta's delivery types are counted by name; its other call events, messages and fields are 'other'", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const named = ['calls.connect', 'calls.terminate', 'calls.call_recording_available', 'calls.call_transcription_available', 'statuses.call',
      'statuses.message', 'messages.interactive', 'messages.voicemail', 'account_update', 'account_settings_update'];
    for (const type of named) m.webhookEvent(type, 'processed');
    for (const type of ['calls.some_future_event', 'messages.text', 'messages.image', 'message_template_status_update']) m.webhookEvent(type, 'ignored');
    const s = await samples(m);
    for (const type of named) assert.equal(sampleSum(s, 'wasb_webhook_events_total', { type, result: 'processed' }), 1, type);
    assert.equal(sampleSum(s, 'wasb_webhook_events_total', { type: 'other', result: 'ignored' }), 4);
    assert.equal(sampleSum(s, 'wasb_webhook_events_total', { type: 'other', result: 'processed' }), 0);
  });

  it('gauges are read at scrape time; MOS is clamped and NaN ignored; nothing throws', async () => {
    const m = new Metrics({ defaultMetrics: false });
    let active = { inbound: 2, outbound: 1 };
    let up = true;
    m.trackCallsInProgress(() => active);
    m.trackDrachtio(() => up);
    let s = await samples(m);
    assert.equal(sampleSum(s, 'wasb_calls_in_progress', { direction: 'inbound' }), 2);
    assert.equal(sampleSum(s, 'wasb_calls_in_progress', { direction: 'outbound' }), 1);
    assert.equal(sampleSum(s, 'wasb_drachtio_connected'), 1);
    active = { inbound: 0, outbound: 0 };
    up = false;
    m.observeQuality('whatsapp', 4.3);
    m.observeQuality('pbx', 7);
    m.observeQuality('pbx', Number.NaN);
    m.setupStep('inbound_accept', -1);
    s = await samples(m);
    assert.equal(sampleSum(s, 'wasb_calls_in_progress'), 0);
    assert.equal(sampleSum(s, 'wasb_drachtio_connected'), 0);
    assert.equal(sampleSum(s, 'wasb_call_mos_count', { leg: 'pbx' }), 1);
    assert.equal(sampleSum(s, 'wasb_call_mos_bucket', { leg: 'pbx', le: '4.75' }), 0, 'clamped to 5');
    assert.equal(sampleSum(s, 'wasb_call_mos_bucket', { leg: 'whatsapp', le: '4.5' }), 1);
    assert.equal(sampleSum(s, 'wasb_call_setup_seconds_count'), 0);
  });

  it('set-up steps from the marks, with the pending marks bounded', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const marks = new Marks();
    const steps = new SetupSteps(marks, m, 3);
    marks.mark('w1', 'webhook_received', 1000);
    marks.mark('w1', 'preaccept_sent', 1012);
    marks.mark('w1', 'pbx_ringing', 1100);
    marks.mark('w1', 'pbx_answered', 3000);
    marks.mark('w1', 'accept_sent', 3005);
    marks.mark('w1', 'accept_sent', 3999); // never twice
    marks.mark('c1', 'invite_received', 0);
    marks.mark('c1', 'connect_sent', 40);
    marks.mark('c1', 'wa_accepted', 5000);
    marks.mark('c1', 'pbx_200_sent', 5002);
    marks.mark('orphan', 'pbx_200_sent', 1); // no start: nothing
    const s = await samples(m);
    const count = (step: string) => sampleSum(s, 'wasb_call_setup_seconds_count', { step });
    const sum = (step: string) => sampleSum(s, 'wasb_call_setup_seconds_sum', { step });
    for (const step of ['inbound_preaccept', 'inbound_pbx_ringing', 'inbound_accept', 'outbound_connect', 'outbound_answer']) assert.equal(count(step), 1, step);
    assert.ok(Math.abs(sum('inbound_preaccept') - 0.012) < 1e-9);
    assert.ok(Math.abs(sum('inbound_pbx_ringing') - 0.1) < 1e-9);
    assert.ok(Math.abs(sum('inbound_accept') - 0.005) < 1e-9);
    assert.ok(Math.abs(sum('outbound_connect') - 0.04) < 1e-9);
    assert.ok(Math.abs(sum('outbound_answer') - 0.002) < 1e-9);
    assert.equal(sampleSum(s, 'wasb_call_setup_seconds_bucket', { step: 'inbound_preaccept', le: '0.01' }), 0);
    assert.equal(sampleSum(s, 'wasb_call_setup_seconds_bucket', { step: 'inbound_preaccept', le: '0.025' }), 1);

    assert.equal(steps.size, 2);
    marks.mark('w1', 'ended');
    steps.drop('c1');
    assert.equal(steps.size, 0);
    for (let i = 0; i < 10; i++) marks.mark(`x${i}`, 'webhook_received');
    assert.equal(steps.size, 3, 'capped');
    steps.close();
    marks.mark('y', 'webhook_received');
    assert.equal(steps.size, 0);
  });

  it('SIP request results: final response classes, once per request, each in the metrics it was given', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const other = new Metrics({ defaultMetrics: false }); // a second bridge in the same process
    assert.deepEqual([200, 302, 486, 503, 603, 100, undefined].map(sipResultOf), ['2xx', '3xx', '4xx', '5xx', '6xx', 'error', 'error']);
    const done = sipTimer(m, 'BYE');
    done('answered');
    done('timeout');
    sipTimer(m, 'CANCEL')('sent', false);
    sipTimer(other, 'INFO')('2xx');
    const s = await samples(m);
    assert.equal(sampleSum(s, 'wasb_sip_requests_total', { method: 'BYE' }), 1);
    assert.equal(sampleSum(s, 'wasb_sip_requests_total', { method: 'BYE', result: 'answered' }), 1);
    assert.equal(sampleSum(s, 'wasb_sip_request_seconds_count', { method: 'BYE' }), 1);
    assert.equal(sampleSum(s, 'wasb_sip_requests_total', { method: 'CANCEL', result: 'sent' }), 1);
    assert.equal(sampleSum(s, 'wasb_sip_request_seconds_count', { method: 'CANCEL' }), 0, 'no response time is known for CANCEL');
    assert.equal(sampleSum(s, 'wasb_sip_requests_total', { method: 'INFO' }), 0, 'the other bridge\'s request is not counted here');
    const o = await samples(other);
    assert.equal(sampleSum(o, 'wasb_sip_requests_total', { method: 'INFO', result: '2xx' }), 1);
    assert.equal(sampleSum(o, 'wasb_sip_requests_total', { method: 'BYE' }), 0);
  });

  it('YCloud requests by endpoint and result, never by URL', async () => {
    const server = http.createServer((req, res) => {
      const url = req.url ?? '';
      if (url.includes('slow')) return void setTimeout(() => res.end('{}'), 2000);
      const status = url.includes('accept') ? 400 : url.includes('reject') ? 503 : 200;
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(status === 200 ? { success: true } : { error: { message: 'no' } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const m = new Metrics({ defaultMetrics: false });
    const ok = new YCloudClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: 'k', timeoutMs: 5000 }, m);
    const slow = new YCloudClient({ baseUrl: `http://127.0.0.1:${port}/slow`, apiKey: 'k', timeoutMs: 150 }, m);
    const dead = new YCloudClient({ baseUrl: `http://127.0.0.1:${await freePort('tcp')}`, apiKey: 'k', timeoutMs: 5000 }, m);
    try {
      await ok.preAccept({ phoneId: 'p', wacid: 'w' }, 'v=0');
      await ok.accept({ phoneId: 'p', wacid: 'w' }, 'v=0').catch(() => undefined);
      await ok.reject({ phoneId: 'p', wacid: 'w' }).catch(() => undefined);
      await ok.getCallingSettings({ number: '+62 8', phoneId: null, wabaId: 'waba/1' }); // ids in the URL, not in the labels
      await slow.terminate({ phoneId: 'p', wacid: 'w' }).catch(() => undefined);
      await dead.connect({ from: { number: '+1', phoneId: null, wabaId: null }, to: '+2', sdpOffer: 'v=0', context: null }).catch(() => undefined);
    } finally {
      server.closeAllConnections();
      server.close();
    }
    const s = await samples(m);
    const n = (endpoint: string, result: string) => sampleSum(s, 'wasb_ycloud_requests_total', { endpoint, result });
    assert.equal(n('preAccept', 'ok'), 1);
    assert.equal(n('accept', 'http_4xx'), 1);
    assert.equal(n('reject', 'http_5xx'), 1);
    assert.equal(n('settings_get', 'ok'), 1);
    assert.equal(n('terminate', 'timeout'), 1);
    assert.equal(n('connect', 'network_error'), 1);
    assert.equal(sampleSum(s, 'wasb_ycloud_request_seconds_count', { endpoint: 'preAccept' }), 1);
    assert.doesNotMatch(await m.text(), /waba|phoneNumbers|127\.0\.0\.1/);
  });

  it('rtpengine commands: a command nobody answers is counted as a timeout', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const port = await freePort('udp');
    const rtp = new RtpEngine([{ host: '127.0.0.1', port }], 150, undefined, m);
    try {
      await assert.rejects(rtp.ping({ host: '127.0.0.1', port }));
    } finally {
      await rtp.close();
    }
    const s = await samples(m);
    assert.equal(sampleSum(s, 'wasb_rtpengine_commands_total', { command: 'ping' }), 1);
    assert.equal(sampleSum(s, 'wasb_rtpengine_commands_total', { command: 'ping', result: 'ok' }), 0);
    assert.equal(sampleSum(s, 'wasb_rtpengine_command_seconds_count', { command: 'ping' }), 1);
  });
});

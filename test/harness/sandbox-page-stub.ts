import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { Page } from 'puppeteer-core';

/**
 * DEV-ONLY stub of the bridge's sandbox endpoints, for working on the browser phone page
 * (src/sandbox/public) without the bridge: it serves the page, speaks the page's SSE/POST protocol and
 * plays the business with a real libwebrtc peer (@roamhq/wrtc), so offers/answers, ICE, DTLS and audio
 * are real. Nothing else uses it.
 *
 * Run the self-check (drives the page in headless Chromium, writes screenshots to /tmp/sbx):
 *   npx tsc -p tsconfig.json && sh test/run-isolated.sh node dist/test/harness/sandbox-page-stub.js
 */

/* Minimal typings for the parts of @roamhq/wrtc used here. */
interface Track { stop(): void }
interface SessionDescription { type: 'offer' | 'answer'; sdp: string }
interface PeerConnection {
  addTrack(track: Track): unknown;
  createOffer(): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(d: SessionDescription): Promise<void>;
  setRemoteDescription(d: SessionDescription): Promise<void>;
  readonly localDescription: SessionDescription | null;
  readonly iceGatheringState: string;
  readonly connectionState: string;
  onicegatheringstatechange: (() => void) | null;
  close(): void;
}
interface AudioSource {
  createTrack(): Track;
  onData(d: { samples: Int16Array; sampleRate: number; bitsPerSample: number; channelCount: number; numberOfFrames: number }): void;
}
interface Wrtc {
  RTCPeerConnection: new (cfg: { iceServers: unknown[] }) => PeerConnection;
  nonstandard: { RTCAudioSource: new () => AudioSource };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const wrtc = require('@roamhq/wrtc') as Wrtc;

const USER_NUMBER = '+15550100001';
const BUSINESS_NUMBER = '+15550100000';

/** One POST the page made. */
export interface StubPost { path: string; body: Record<string, unknown>; at: number }

/** The business side of one call: a libwebrtc peer sending a 660 Hz tone. */
class BusinessPeer {
  readonly pc = new wrtc.RTCPeerConnection({ iceServers: [] });
  private readonly source = new wrtc.nonstandard.RTCAudioSource();
  private readonly timer: NodeJS.Timeout;
  private phase = 0;

  constructor() {
    this.pc.addTrack(this.source.createTrack());
    this.timer = setInterval(() => this.sendFrame(), 10);
  }

  private sendFrame(): void {
    const samples = new Int16Array(480); // 10 ms at 48 kHz
    for (let i = 0; i < samples.length; i++) samples[i] = Math.round(6000 * Math.sin((2 * Math.PI * 660 * this.phase++) / 48000));
    this.source.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: 480 });
  }

  async gathered(): Promise<string> {
    await new Promise<void>((resolve) => {
      if (this.pc.iceGatheringState === 'complete') return resolve();
      const limit = setTimeout(resolve, 3000);
      this.pc.onicegatheringstatechange = () => {
        if (this.pc.iceGatheringState === 'complete') { clearTimeout(limit); resolve(); }
      };
    });
    return this.pc.localDescription?.sdp ?? '';
  }

  close(): void {
    clearInterval(this.timer);
    this.pc.close();
  }
}

export interface SandboxPageStub {
  url: string;
  posts: StubPost[];
  /** Sends one SSE message to every connected page. */
  send(event: string, data: unknown): void;
  /** An agent calls the phone: sends `incoming` with a real offer; resolves with the wacid. */
  incoming(): Promise<string>;
  /** Ends every page's event stream (EventSource then reconnects). */
  dropStreams(): void;
  /** The business ends the call. */
  endByBusiness(wacid: string, reason: string): void;
  close(): Promise<void>;
}

function publicDir(): string {
  const candidates = [path.resolve(__dirname, '../../../src/sandbox/public'), path.resolve(__dirname, '../../src/sandbox/public')];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'index.html')));
  if (!found) throw new Error(`sandbox page not found in ${candidates.join(', ')}`);
  return found;
}

const ASSETS: Record<string, [string, string]> = {
  '/sandbox': ['index.html', 'text/html; charset=utf-8'],
  '/sandbox/phone.js': ['phone.js', 'text/javascript; charset=utf-8'],
  '/sandbox/phone.css': ['phone.css', 'text/css; charset=utf-8'],
};

export async function startSandboxPageStub(): Promise<SandboxPageStub> {
  const dir = publicDir();
  const clients = new Set<http.ServerResponse>();
  const peers = new Map<string, BusinessPeer>();
  const posts: StubPost[] = [];
  let seq = 0;

  /** Timeline frames replayed to each new connection, as the bridge does. */
  const history: string[] = [];
  const send = (event: string, data: unknown): void => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    if (event === 'timeline') history.push(frame);
    for (const res of clients) res.write(frame);
  };
  const timeline = (kind: string, title: string, wacid: string | null, detail?: object): void =>
    send('timeline', { at: Date.now(), kind, title, wacid, detail });

  const endPeer = (wacid: string): void => {
    peers.get(wacid)?.close();
    peers.delete(wacid);
  };

  async function userCalls(sdp: string): Promise<string> {
    const wacid = `wacid.stub${++seq}${Date.now().toString(36)}`;
    const peer = new BusinessPeer();
    peers.set(wacid, peer);
    timeline('webhook', 'calls.connect (user → business) delivered to the bridge', wacid, { event: 'connect', direction: 'USER_INITIATED', from: USER_NUMBER, to: BUSINESS_NUMBER });
    await peer.pc.setRemoteDescription({ type: 'offer', sdp });
    await peer.pc.setLocalDescription(await peer.pc.createAnswer());
    const answer = await peer.gathered();
    // After the response: the page must cope with events arriving before or after its POST returns.
    setTimeout(() => {
      timeline('sip', 'INVITE sip:demo@127.0.0.1 → 180 Ringing', wacid, { callId: 'a84b4c76e66710', status: 180 });
      timeline('api', 'POST /v2/whatsapp/calls (pre_accept) → 200', wacid, { action: 'pre_accept' });
      send('answer', { wacid, sdp: answer, stage: 'preAccept' });
    }, 150);
    setTimeout(() => {
      timeline('sip', '200 OK from the PBX, media bridged', wacid, { status: 200 });
      timeline('api', 'POST /v2/whatsapp/calls (accept) → 200', wacid, { action: 'accept' });
      timeline('demo', 'demo agent answered, playing the greeting', wacid);
      send('answer', { wacid, sdp: answer, stage: 'accept' });
      send('accepted', { wacid });
    }, 900);
    return wacid;
  }

  async function incoming(): Promise<string> {
    const wacid = `wacid.stubin${++seq}${Date.now().toString(36)}`;
    const peer = new BusinessPeer();
    peers.set(wacid, peer);
    await peer.pc.setLocalDescription(await peer.pc.createOffer());
    const offer = await peer.gathered();
    timeline('sip', 'INVITE from agent 201 → WhatsApp +1 555 010 0001', wacid, { from: 'sip:201@127.0.0.1' });
    timeline('api', 'POST /v2/whatsapp/calls (connect, business-initiated) → 200', wacid);
    send('incoming', { wacid, from: '+15550100201', to: USER_NUMBER, offer });
    return wacid;
  }

  async function handlePost(url: string, body: Record<string, unknown>): Promise<[number, object]> {
    posts.push({ path: url, body, at: Date.now() });
    if (url === '/sandbox/api/calls') {
      if (typeof body.sdp !== 'string' || !body.sdp.includes('m=audio')) return [400, { error: 'sdp missing' }];
      return [200, { wacid: await userCalls(body.sdp) }];
    }
    const call = /^\/sandbox\/api\/calls\/([^/]+)\/(ringing|accept|decline|hangup)$/.exec(url);
    if (call) {
      const wacid = decodeURIComponent(call[1]!);
      const peer = peers.get(wacid);
      if (!peer) return [404, { error: 'no such call' }];
      const action = call[2]!;
      if (action === 'ringing') {
        if (typeof body.sdp !== 'string') return [400, { error: 'sdp missing' }];
        await peer.pc.setRemoteDescription({ type: 'answer', sdp: body.sdp });
        timeline('webhook', 'calls.connect (answer SDP, ringing) delivered to the bridge', wacid);
      } else if (action === 'accept') {
        timeline('webhook', 'calls.accept delivered to the bridge', wacid);
        timeline('sip', '200 OK sent to agent 201, media bridged', wacid);
      } else {
        timeline('webhook', `calls.terminate (${action}) delivered to the bridge`, wacid);
        endPeer(wacid);
        send('ended', { wacid, reason: action === 'decline' ? 'rejected' : 'completed', by: 'user' });
      }
      return [200, {}];
    }
    const perm = /^\/sandbox\/api\/permissions\/([^/]+)$/.exec(url);
    if (perm) {
      if (!['temporary', 'permanent', 'decline'].includes(String(body.choice))) return [400, { error: 'bad choice' }];
      timeline('webhook', `user_call_permission_reply: ${String(body.choice)}`, null, { id: decodeURIComponent(perm[1]!), choice: body.choice });
      return [200, {}];
    }
    return [404, { error: 'not found' }];
  }

  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && ASSETS[url]) {
      const [file, type] = ASSETS[url]!;
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(fs.readFileSync(path.join(dir, file)));
      return;
    }
    if (req.method === 'GET' && url === '/sandbox/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      clients.add(res);
      req.on('close', () => clients.delete(res));
      // A short retry so the self-check's reconnect is quick.
      res.write(`retry: 300\nevent: hello\ndata: ${JSON.stringify({ userNumber: USER_NUMBER, businessNumber: BUSINESS_NUMBER, businessName: 'Demo Business', pbx: 'demo agent', clientId: `c${clients.size}` })}\n\n`);
      for (const frame of history) res.write(frame);
      return;
    }
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body: Record<string, unknown> = {};
        try { body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {}; } catch { /* empty body */ }
        handlePost(url, body)
          .then(([status, json]) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(json)); })
          .catch((err: Error) => { res.writeHead(500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: err.message })); });
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/sandbox`,
    posts,
    send,
    incoming,
    dropStreams() {
      for (const res of clients) res.end();
      clients.clear();
    },
    endByBusiness(wacid, reason) {
      timeline('webhook', 'calls.terminate (business hung up) delivered to the bridge', wacid);
      endPeer(wacid);
      send('ended', { wacid, reason, by: 'business' });
    },
    async close() {
      for (const wacid of [...peers.keys()]) endPeer(wacid);
      for (const res of clients) res.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ------------------------------------------------------------------ manual self-check

type PhoneState = 'idle' | 'calling' | 'ringing-out' | 'ringing-in' | 'connected' | 'ended';

/* tsconfig has no DOM lib: page-side code is passed as strings. */
async function js<T>(page: Page, expression: string): Promise<T> {
  return (await page.evaluate(expression)) as T;
}

async function waitJs(page: Page, expression: string, timeout = 10000): Promise<void> {
  await page.waitForFunction(expression, { timeout });
}

async function waitState(page: Page, state: PhoneState): Promise<void> {
  await waitJs(page, `document.body.dataset.state === ${JSON.stringify(state)}`);
}

async function selfCheck(): Promise<void> {
  const outDir = '/tmp/sbx';
  fs.mkdirSync(outDir, { recursive: true });
  const stub = await startSandboxPageStub();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless=new', '--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`,
      // Media over loopback only (see browser-wa-user.ts).
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
  const problems: string[] = [];
  const step = (text: string): void => console.log(`  ✓ ${text}`);
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') problems.push(`console.${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${String(e)}`));
    page.on('requestfailed', (r) => { if (!r.url().endsWith('/sandbox/events')) problems.push(`request failed: ${r.url()}`); });
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(stub.url, { waitUntil: 'load' });
    await waitJs(page, 'window.sandboxPhone.hello !== null');
    step('page loaded, hello received');
    await page.screenshot({ path: path.join(outDir, 'page-idle.png') });

    // The user calls the business.
    await page.click('[data-testid="call-business"]');
    await waitState(page, 'connected');
    await waitJs(page, "window.sandboxPhone.pc.connectionState === 'connected'");
    const offer = stub.posts.find((p) => p.path === '/sandbox/api/calls')?.body.sdp as string;
    const mline = /^m=audio .*$/m.exec(offer)?.[0] ?? '';
    if (mline.split(' ').length !== 5) problems.push(`offer m-line should have 2 payload types: ${mline}`);
    if (/rtpmap:\d+ (?!opus\/48000\/2|telephone-event\/8000)/.test(offer)) problems.push('offer has other codecs');
    step(`outgoing call connected (${mline})`);
    await page.click('[data-testid="keypad"]');
    for (const key of ['key-1', 'key-2', 'key-pound']) await page.click(`[data-testid="${key}"]`);
    const digits = await js<string>(page, 'document.querySelector(\'[data-testid="typed-digits"]\').textContent');
    if (digits !== '12#') problems.push(`typed digits ${digits}`);
    await waitJs(page, 'Number(document.querySelector(\'[data-testid="remote-level-meter"]\').dataset.level) > 0.2', 5000)
      .then(() => step('remote level meter moves'), () => problems.push('remote level meter stays at 0'));
    await page.click('[data-testid="mute"]');
    const muted = await js<boolean>(page, 'window.sandboxPhone.localStream.getAudioTracks()[0].enabled === false');
    if (!muted) problems.push('mute did not disable the track');
    await page.click('[data-testid="mute"]');
    step('DTMF 12# typed, mute toggles');
    await page.click('[data-testid="hangup"]');
    await waitState(page, 'ended');
    await waitState(page, 'idle');
    const micReleased = await js<boolean>(page, "window.sandboxPhone.localStream.getTracks().every((t) => t.readyState === 'ended')");
    if (!micReleased) problems.push('mic still open after hang-up');
    step('hang-up: back to idle, mic released');

    // An agent calls the user.
    const wacid = await stub.incoming();
    await waitState(page, 'ringing-in');
    await waitJs(page, 'document.querySelector(\'[data-testid="timeline"]\').textContent.includes("/:wacid/ringing →")');
    const mutedWhileRinging = await js<boolean>(page, 'window.sandboxPhone.localStream.getAudioTracks()[0].enabled === false');
    if (!mutedWhileRinging) problems.push('mic not muted while ringing');
    await page.screenshot({ path: path.join(outDir, 'page-ringing.png') });
    step('incoming call rings, answer posted, mic muted');
    await page.click('[data-testid="accept"]');
    await waitState(page, 'connected');
    await waitJs(page, "window.sandboxPhone.pc.connectionState === 'connected'");
    await page.click('[data-testid="keypad"]');
    for (const key of ['key-5', 'key-star']) await page.click(`[data-testid="${key}"]`);
    stub.send('timeline', { at: Date.now(), kind: 'demo', title: 'demo agent heard digit 5', wacid });
    stub.send('timeline', { at: Date.now(), kind: 'demo', title: 'demo agent heard digit *', wacid });
    stub.send('timeline', { at: Date.now(), kind: 'info', title: 'rtpengine: media flowing both ways', wacid });
    await waitJs(page, 'document.querySelector(\'[data-testid="timer"]\').textContent === "00:02"', 5000);
    step('incoming call accepted, connected, timer runs');
    await page.screenshot({ path: path.join(outDir, 'page.png') });

    // Permission prompt.
    stub.send('permission-request', { id: 'perm-1', business: BUSINESS_NUMBER, businessName: 'Demo Business', text: 'We would like to call you about your order #1042.' });
    await page.waitForSelector('[data-testid="permission-temporary"]', { visible: true, timeout: 5000 });
    await waitJs(page, 'document.getAnimations().every((a) => a.playState !== "running" || a.effect.getTiming().iterations === Infinity)', 5000);
    await page.screenshot({ path: path.join(outDir, 'page-permission.png') });
    await page.click('[data-testid="permission-temporary"]');
    await page.waitForSelector('#permission', { hidden: true, timeout: 5000 });
    if (!stub.posts.some((p) => p.path === '/sandbox/api/permissions/perm-1' && p.body.choice === 'temporary')) problems.push('permission POST missing');
    step('permission prompt answered');

    // The business hangs up; the CDR row arrives.
    stub.endByBusiness(wacid, 'completed');
    stub.send('timeline', {
      at: Date.now(), kind: 'cdr', title: 'CDR written', wacid,
      detail: { wacid, direction: 'outbound', from: '+15550100201', to: USER_NUMBER, started_at: new Date(Date.now() - 6000).toISOString(), answered_at: new Date(Date.now() - 4000).toISOString(), ended_at: new Date().toISOString(), duration_s: 4, end_reason: 'completed', ended_by: 'business', dtmf_digits: '5*' },
    });
    await waitState(page, 'ended');
    const endedStatus = await js<string>(page, 'document.querySelector(\'[data-testid="status"]\').textContent');
    await waitState(page, 'idle');
    step(`ended by business ("${endedStatus}")`);
    const kinds = await js<string[]>(page, '[...new Set([...document.querySelectorAll(\'[data-testid="timeline"] > li\')].map((r) => r.dataset.kind))]');
    step(`timeline row kinds: ${kinds.join(', ')}`);
    await page.screenshot({ path: path.join(outDir, 'page-ended.png') });
    const rowsBefore = await js<number>(page, 'document.querySelectorAll(\'[data-testid="timeline"] > li\').length');
    stub.dropStreams();
    await waitJs(page, 'document.querySelector(\'[data-testid="sse-status"]\').dataset.sse !== "open"');
    await waitJs(page, 'document.querySelector(\'[data-testid="sse-status"]\').dataset.sse === "open"');
    stub.send('timeline', { at: Date.now(), kind: 'info', title: 'after the reconnect', wacid: null });
    await waitJs(page, 'document.querySelector(\'[data-testid="timeline"]\').textContent.includes("after the reconnect")');
    const rowsAfter = await js<number>(page, 'document.querySelectorAll(\'[data-testid="timeline"] > li\').length');
    if (rowsAfter !== rowsBefore + 1) problems.push(`reconnect: ${rowsBefore} rows before, ${rowsAfter} after (history replay duplicated?)`);
    step('SSE reconnect: indicator follows, replayed history not duplicated');
    await page.close();

    // A fresh page that is called before anyone touched it (no user activation: silent ringing, no
    // AudioContext warnings); a second incoming call while busy is declined by itself.
    const fresh = await browser.newPage();
    fresh.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') problems.push(`fresh page console.${m.type()}: ${m.text()}`); });
    fresh.on('pageerror', (e) => problems.push(`fresh pageerror: ${String(e)}`));
    await fresh.goto(`${stub.url}?processing=off`, { waitUntil: 'load' });
    await waitJs(fresh, 'window.sandboxPhone.hello !== null');
    const first = await stub.incoming();
    await waitState(fresh, 'ringing-in');
    await fresh.click('[data-testid="accept"]');
    await waitState(fresh, 'connected');
    await waitJs(fresh, 'Number(document.querySelector(\'[data-testid="remote-level-meter"]\').dataset.level) > 0.2', 5000)
      .then(() => step('fresh page: accepted, remote meter moves after the Accept click'), () => problems.push('fresh page: remote meter stays at 0'));
    const second = await stub.incoming();
    await waitJs(fresh, `document.querySelector('[data-testid="timeline"]').textContent.includes('Busy: declining incoming call ${second}')`);
    await waitJs(fresh, `document.querySelector('[data-testid="timeline"] li:last-child').textContent.includes('/:wacid/decline → 200')`);
    if (await js<string>(fresh, 'window.sandboxPhone.wacid') !== first) problems.push('busy decline disturbed the call');
    step('second incoming call declined automatically while busy');
    await fresh.click('[data-testid="hangup"]');
    await waitState(fresh, 'idle');
  } finally {
    await browser.close();
    await stub.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  if (problems.length) {
    console.error(`PROBLEMS:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log(`OK — screenshots in ${outDir}`);
  }
}

if (require.main === module) {
  selfCheck().catch((err: unknown) => { console.error(err); process.exitCode = 1; });
}

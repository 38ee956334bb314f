import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { Browser, Page } from 'puppeteer-core';
import { wavFile } from '../../src/media/wav';
import { sineFrame } from './tone';
import { loopbackOnly, opusOnly } from './wa-user';

/**
 * A WhatsApp user played by a real headless Chromium. Unlike @roamhq/wrtc, Chromium's RTCDTMFSender
 * sends RFC 4733 events inside SRTP, so tests can prove DTMF from the WhatsApp leg reaches the PBX.
 *
 * One browser process is shared per test file (`BrowserWaUser.launch()`); every user gets its own page
 * (a blank page served from a loopback HTTP server: getUserMedia needs a secure context, which
 * about:blank and data: URLs are not). Signalling is by page.evaluate; every step has a timeout.
 *
 * The user's voice is a pure tone. Chromium's fake capture device plays one WAV file per browser
 * process, so a user whose tone is the browser's (`launch({ toneHz })`, default 440 Hz) captures it with
 * getUserMedia; a user with another tone gets it from a WebAudio oscillator instead.
 */

const CHROMIUM = '/usr/bin/chromium';

/** getStats() of the inbound audio stream, summed over inbound-rtp audio reports. */
export interface BrowserInboundStats {
  packetsReceived: number;
  bytesReceived: number;
  totalAudioEnergy: number;
}

/** One tone the DTMF sender reported through `tonechange`, with the page's wall clock (ms since epoch). */
export interface SentTone { tone: string; at: number }

/** What the page's tone meter heard of `listenHz` in the received audio (20 ms frames). */
export interface HeardTone {
  frames: number;
  loudFrames: number;
  framesWithTone: number;
  /** Wall clock (ms since epoch) of the first loud frame / the first frame with the tone, or null. */
  firstLoudAt: number | null;
  firstHeardAt: number | null;
}

export interface BrowserLaunchOptions {
  /** The tone of Chromium's fake microphone (WAV generated here). Default 440 Hz. */
  toneHz?: number;
  executablePath?: string;
  timeoutMs?: number;
  /**
   * Launch even though this process sees network interfaces other than loopback. Chromium gathers ICE
   * candidates on every interface and its connectivity checks from them reach rtpengine's 127.0.0.1
   * port, so rtpengine learns (and sends media to) the host's own non-loopback address. Run the tests
   * in a loopback-only network namespace instead (test/run-isolated.sh does so when root).
   */
  allowNonLoopbackInterfaces?: boolean;
}

export interface BrowserWaUserOptions {
  /** Timeout of each step (page set-up, offer/answer, stats); default 10 s. */
  timeoutMs?: number;
  /** Measure this tone in the received audio (see heard()/waitHeard()). */
  listenHz?: number;
  /** ICE gathering limit inside the page; default 5 s. */
  gatherTimeoutMs?: number;
}

/** A shared headless Chromium plus the loopback HTTP server its pages load. */
export class BrowserHandle {
  private closed = false;

  constructor(
    readonly browser: Browser,
    /** The frequency of the fake microphone's WAV. */
    readonly toneHz: number,
    readonly pageUrl: string,
    private readonly server: http.Server,
    private readonly dir: string,
  ) {}

  /** A fresh page on the harness's blank secure-context page. */
  async newPage(timeoutMs: number): Promise<Page> {
    if (this.closed) throw new Error('BrowserHandle is closed');
    const page = await withTimeout(this.browser.newPage(), timeoutMs, 'browser.newPage');
    try {
      await page.goto(this.pageUrl, { timeout: timeoutMs, waitUntil: 'load' });
      return page;
    } catch (err) {
      await page.close().catch(() => undefined);
      throw err;
    }
  }

  /** Whether the browser process is still there. */
  get connected(): boolean {
    return this.browser.connected;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const proc = this.browser.process();
    await withTimeout(this.browser.close(), 5000, 'browser.close').catch(() => {
      if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    });
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export class BrowserWaUser {
  private page: Page | null = null;
  private ready: Promise<Page> | null = null;
  private closed = false;
  private readonly timeoutMs: number;
  /** The page's console errors and uncaught exceptions, for failure messages. */
  readonly log: string[] = [];

  /** The Chromium binary to use, or null when there is none (tests then skip, saying why). */
  static available(executablePath = CHROMIUM): string | null {
    try {
      fs.accessSync(executablePath, fs.constants.X_OK);
      return executablePath;
    } catch {
      return null;
    }
  }

  /**
   * Why the browser must not be started here, or null: non-loopback network interfaces are up (see
   * BrowserLaunchOptions.allowNonLoopbackInterfaces).
   */
  static isolationProblem(): string | null {
    const others = Object.entries(os.networkInterfaces())
      .flatMap(([name, addrs]) => (addrs ?? []).filter((a) => !a.internal).map((a) => `${name} ${a.address}`));
    return others.length === 0
      ? null
      : `non-loopback interfaces are up (${others.join(', ')}): Chromium's ICE checks from them would make rtpengine send media to those addresses; run in a loopback-only network namespace (test/run-isolated.sh)`;
  }

  /**
   * Starts one headless Chromium for a test file: fake media devices fed with a pure tone, WebRTC allowed
   * on loopback (Chromium ignores 127.0.0.1 for ICE without --allow-loopback-in-peer-connection: in a
   * loopback-only namespace it would gather no candidate at all), no mDNS host-name obfuscation, nothing
   * that calls home. puppeteer's headless mode adds --mute-audio: received audio is decoded and measured
   * (getStats, the tone meter) but never played to a sound device.
   */
  static async launch(opts: BrowserLaunchOptions = {}): Promise<BrowserHandle> {
    const executablePath = opts.executablePath ?? CHROMIUM;
    if (!BrowserWaUser.available(executablePath)) throw new Error(`no Chromium at ${executablePath}`);
    const problem = BrowserWaUser.isolationProblem();
    if (problem && !opts.allowNonLoopbackInterfaces) throw new Error(`BrowserWaUser.launch refused: ${problem}`);
    const toneHz = opts.toneHz ?? 440;
    const timeoutMs = opts.timeoutMs ?? 20000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-chromium-'));
    const profile = path.join(dir, 'profile');
    fs.mkdirSync(profile);
    const wav = path.join(dir, `tone-${toneHz}.wav`);
    fs.writeFileSync(wav, toneWav(toneHz));

    const server = http.createServer((req, res) => {
      if (req.url === '/' || req.url?.startsWith('/?')) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(PAGE_HTML);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const pageUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

    try {
      const browser = await puppeteer.launch({
        executablePath,
        headless: true,
        pipe: true, // CDP over a pipe: no debugging port
        timeout: timeoutMs,
        protocolTimeout: timeoutMs,
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        args: [
          '--headless=new',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--disable-domain-reliability',
          '--no-default-browser-check',
          `--user-data-dir=${profile}`,
          '--use-fake-ui-for-media-stream',
          '--use-fake-device-for-media-stream',
          `--use-file-for-fake-audio-capture=${wav}`,
          '--allow-loopback-in-peer-connection',
          '--autoplay-policy=no-user-gesture-required',
          // Host candidates as addresses, never mDNS names (whose announcements would go to 224.0.0.251).
          '--disable-features=WebRtcHideLocalIpsWithMdns',
        ],
      });
      return new BrowserHandle(browser, toneHz, pageUrl, server, dir);
    } catch (err) {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  constructor(
    private readonly browser: BrowserHandle,
    /** The tone this user "says". */
    readonly toneHz: number = browser.toneHz,
    private readonly opts: BrowserWaUserOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 10000;
  }

  /** An SDP offer shaped like WhatsApp's: opus/48000/2 and telephone-event/8000 only, 127.0.0.1 host candidates. */
  async createOffer(): Promise<string> {
    const sdp = await this.call<string>('createOffer', []);
    return opusOnly(loopbackOnly(sdp));
  }

  async applyAnswer(sdp: string): Promise<void> {
    await this.call<void>('applyAnswer', [sdp]);
  }

  /** As the called party (business-initiated call): answers the bridge's WebRTC offer. */
  async answer(offer: string): Promise<string> {
    const sdp = await this.call<string>('answer', [offer]);
    return loopbackOnly(sdp);
  }

  /** Resolves when ICE+DTLS are up (RTCPeerConnection.connectionState 'connected'). */
  async connected(timeoutMs = this.timeoutMs): Promise<void> {
    await this.call<void>('connected', [timeoutMs], timeoutMs + 1000);
  }

  /** RTCPeerConnection.connectionState ('new' before the page exists). */
  async connectionState(): Promise<string> {
    if (!this.ready) return 'new';
    return this.call<string>('connectionState', []);
  }

  /**
   * Sends DTMF with RTCDTMFSender.insertDTMF (RFC 4733 in SRTP) and resolves when every tone was played
   * (tonechange with the empty tone), with the tones and when each started. Rejects when telephone-event
   * was not negotiated (canInsertDTMF false) or the tones do not finish in time.
   */
  async sendDigits(digits: string, durationMs = 120, gapMs = 80): Promise<SentTone[]> {
    const budget = digits.length * (durationMs + gapMs) + this.timeoutMs;
    return this.call<SentTone[]>('sendDigits', [digits, durationMs, gapMs, budget], budget + 1000);
  }

  /** Inbound audio as getStats() reports it (all RTP of the audio m-line: voice and events). */
  async stats(): Promise<BrowserInboundStats> {
    return this.call<BrowserInboundStats>('stats', []);
  }

  /** Every getStats() report, as plain objects (codecs, transports, candidate pairs...). */
  async statsReport(): Promise<Array<Record<string, unknown>>> {
    return this.call<Array<Record<string, unknown>>>('report', []);
  }

  /** Polls getStats until `n` packets were received on the audio stream. */
  async waitPacketsReceived(n: number, timeoutMs = this.timeoutMs): Promise<BrowserInboundStats> {
    const end = Date.now() + timeoutMs;
    let last: BrowserInboundStats | null = null;
    for (;;) {
      last = await this.stats();
      if (last.packetsReceived >= n) return last;
      if (Date.now() >= end) {
        throw new Error(`BrowserWaUser: ${last.packetsReceived} of ${n} packets received within ${timeoutMs} ms${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  /** What the tone meter heard of `listenHz` (needs the listenHz option). */
  async heard(): Promise<HeardTone> {
    if (this.opts.listenHz === undefined) throw new Error('BrowserWaUser: no listenHz given');
    return this.call<HeardTone>('heard', []);
  }

  /** Resolves once `frames` 20 ms frames carrying `listenHz` were received. */
  async waitHeard(frames: number, timeoutMs = this.timeoutMs): Promise<HeardTone> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const h = await this.heard();
      if (h.framesWithTone >= frames) return h;
      if (Date.now() >= end) {
        throw new Error(`BrowserWaUser: ${h.framesWithTone} of ${frames} frames with ${this.opts.listenHz} Hz heard within ${timeoutMs} ms (${h.loudFrames} loud of ${h.frames})${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  /** Closes the peer connection and the page. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const page = this.page ?? (this.ready ? await this.ready.catch(() => null) : null);
    if (!page) return;
    await withTimeout(page.evaluate(() => (globalThis as unknown as PageGlobal).waUser.close()), 3000, 'close').catch(() => undefined);
    await withTimeout(page.close(), 3000, 'page.close').catch(() => undefined);
    this.page = null;
  }

  private async ensurePage(): Promise<Page> {
    if (this.closed) throw new Error('BrowserWaUser is closed');
    this.ready ??= (async () => {
      const page = await this.browser.newPage(this.timeoutMs);
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warn') this.log.push(`console.${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => this.log.push(`pageerror: ${String(e)}`));
      const init: PageInit = {
        toneHz: this.toneHz,
        useFakeDevice: this.toneHz === this.browser.toneHz,
        listenHz: this.opts.listenHz ?? null,
        gatherTimeoutMs: this.opts.gatherTimeoutMs ?? 5000,
      };
      try {
        await withTimeout(page.evaluate((o) => (globalThis as unknown as PageGlobal).waUser.init(o), init), this.timeoutMs, 'init');
      } catch (err) {
        await page.close().catch(() => undefined);
        throw err;
      }
      this.page = page;
      return page;
    })();
    return this.ready;
  }

  private async call<T>(method: PageMethod, args: unknown[], timeoutMs = this.timeoutMs): Promise<T> {
    const page = await this.ensurePage();
    try {
      const run = page.evaluate(
        (m: string, a: unknown[]) => {
          const api = (globalThis as unknown as { waUser: Record<string, (...x: unknown[]) => unknown> }).waUser;
          return api[m]!(...a) as Promise<unknown>;
        },
        method,
        args,
      );
      return (await withTimeout(run, timeoutMs, method)) as T;
    } catch (err) {
      throw new Error(`BrowserWaUser.${method}: ${(err as Error).message ?? String(err)}${this.logTail()}`);
    }
  }

  private logTail(): string {
    return this.log.length ? `\n  page log:\n  ${this.log.slice(-10).join('\n  ')}` : '';
  }
}

type PageMethod = 'createOffer' | 'applyAnswer' | 'answer' | 'connected' | 'connectionState' | 'sendDigits' | 'stats' | 'report' | 'heard';
interface PageInit { toneHz: number; useFakeDevice: boolean; listenHz: number | null; gatherTimeoutMs: number }
interface PageGlobal { waUser: { init(o: PageInit): Promise<void>; close(): void } }

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A mono 16-bit 48 kHz WAV of a pure tone, a whole number of periods long so Chromium's loop is seamless. */
export function toneWav(freq: number, amplitude = 8000, sampleRate = 48000): Buffer {
  // 1 s holds a whole number of periods for an integer frequency; otherwise loop over 10 s.
  const n = Number.isInteger(freq) ? sampleRate : sampleRate * 10;
  return wavFile(sineFrame(freq, sampleRate, n, 0, amplitude), sampleRate);
}

/*
 * The page side, plain browser JavaScript (the repo compiles without DOM typings). A tone meter runs in
 * an AudioWorklet: Goertzel share and RMS per 20 ms frame, the same thresholds as tone.ts's ToneDetector.
 */
export const TONE_METER_WORKLET = `
class ToneMeter extends AudioWorkletProcessor {
  constructor(o) { super(); this.f = o.processorOptions.freq; this.buf = new Float32Array(Math.round(sampleRate / 50)); this.n = 0; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    for (let i = 0; i < ch.length; i++) {
      this.buf[this.n++] = ch[i];
      if (this.n === this.buf.length) { this.flush(); this.n = 0; }
    }
    return true;
  }
  flush() {
    const x = this.buf, n = x.length, k = Math.round(n * this.f / sampleRate), w = 2 * Math.PI * k / n, c = 2 * Math.cos(w);
    let s1 = 0, s2 = 0, e = 0;
    for (let i = 0; i < n; i++) { const v = x[i] * 32768; e += v * v; const s0 = v + c * s1 - s2; s2 = s1; s1 = s0; }
    const p = s1 * s1 + s2 * s2 - c * s1 * s2;
    this.port.postMessage({ share: e > 0 ? Math.min(1, 2 * p / (n * e)) : 0, rms: Math.sqrt(e / n) });
  }
}
registerProcessor('tone-meter', ToneMeter);
`;

const PAGE_SCRIPT = `
(() => {
  const st = { pc: null, stream: null, ctx: null, audioEl: null, meterCtx: null, gatherTimeoutMs: 5000, listenHz: null,
    heard: { frames: 0, loudFrames: 0, framesWithTone: 0, firstLoudAt: null, firstHeardAt: null } };
  const pcOrThrow = () => { if (!st.pc) throw new Error('init() not called'); return st.pc; };
  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, st.gatherTimeoutMs);
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); } });
    });
  }
  function play(stream) {
    // Chromium decodes a remote track for getStats' audio level/energy only while a media element plays
    // it, unmuted (the browser runs with --mute-audio, so nothing is heard).
    if (st.audioEl) return;
    const a = new Audio(); a.srcObject = stream; a.play().catch((err) => console.error('remote audio: ' + err)); st.audioEl = a;
  }
  async function meter(stream) {
    if (st.listenHz === null || st.meterCtx) return;
    const ctx = new AudioContext({ sampleRate: 48000 }); st.meterCtx = ctx;
    const url = URL.createObjectURL(new Blob([${JSON.stringify(TONE_METER_WORKLET)}], { type: 'text/javascript' }));
    await ctx.audioWorklet.addModule(url);
    const node = new AudioWorkletNode(ctx, 'tone-meter', { processorOptions: { freq: st.listenHz } });
    const sink = ctx.createGain(); sink.gain.value = 0;
    ctx.createMediaStreamSource(stream).connect(node).connect(sink).connect(ctx.destination);
    node.port.onmessage = (e) => {
      const h = st.heard, now = Date.now();
      h.frames++;
      if (e.data.rms >= 300) { h.loudFrames++; if (h.firstLoudAt === null) h.firstLoudAt = now; }
      if (e.data.rms >= 300 && e.data.share >= 0.5) { h.framesWithTone++; if (h.firstHeardAt === null) h.firstHeardAt = now; }
    };
    await ctx.resume();
  }
  globalThis.waUser = {
    async init(o) {
      st.gatherTimeoutMs = o.gatherTimeoutMs; st.listenHz = o.listenHz;
      let track;
      if (o.useFakeDevice) {
        st.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false });
        track = st.stream.getAudioTracks()[0];
      } else {
        const ctx = new AudioContext({ sampleRate: 48000 }); st.ctx = ctx;
        const osc = ctx.createOscillator(); osc.frequency.value = o.toneHz;
        const gain = ctx.createGain(); gain.gain.value = 8000 / 32768;
        const dst = ctx.createMediaStreamDestination();
        osc.connect(gain).connect(dst); osc.start(); await ctx.resume();
        st.stream = dst.stream; track = dst.stream.getAudioTracks()[0];
      }
      const pc = new RTCPeerConnection({ iceServers: [] });
      pc.addTrack(track, st.stream);
      pc.ontrack = (e) => {
        const stream = e.streams[0] || new MediaStream([e.track]);
        play(stream);
        meter(stream).catch((err) => console.error('tone meter: ' + err));
      };
      st.pc = pc;
    },
    async createOffer() {
      const pc = pcOrThrow();
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      return pc.localDescription.sdp;
    },
    async applyAnswer(sdp) { await pcOrThrow().setRemoteDescription({ type: 'answer', sdp }); },
    async answer(sdp) {
      const pc = pcOrThrow();
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      return pc.localDescription.sdp;
    },
    connectionState() { return pcOrThrow().connectionState; },
    connected(timeoutMs) {
      const pc = pcOrThrow();
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pc.connectionState === 'connected') { clearTimeout(t); resolve(); }
          else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') { clearTimeout(t); reject(new Error('connection ' + pc.connectionState)); }
        };
        const t = setTimeout(() => reject(new Error('not connected within ' + timeoutMs + ' ms (ICE ' + pc.iceConnectionState + ', connection ' + pc.connectionState + ')')), timeoutMs);
        pc.addEventListener('connectionstatechange', check);
        check();
      });
    },
    sendDigits(digits, durationMs, gapMs, timeoutMs) {
      const sender = pcOrThrow().getSenders().find((s) => s.track && s.track.kind === 'audio');
      if (!sender || !sender.dtmf) throw new Error('no audio sender with DTMF');
      const dtmf = sender.dtmf;
      if (!dtmf.canInsertDTMF) throw new Error('canInsertDTMF is false: telephone-event not negotiated or transport not up');
      return new Promise((resolve, reject) => {
        const sent = [];
        const t = setTimeout(() => { dtmf.ontonechange = null; reject(new Error('DTMF not finished within ' + timeoutMs + ' ms; sent ' + sent.map((s) => s.tone).join(''))); }, timeoutMs);
        dtmf.ontonechange = (e) => {
          if (e.tone === '') { clearTimeout(t); dtmf.ontonechange = null; resolve(sent); }
          else sent.push({ tone: e.tone, at: Date.now() });
        };
        dtmf.insertDTMF(digits, durationMs, gapMs);
      });
    },
    async stats() {
      const out = { packetsReceived: 0, bytesReceived: 0, totalAudioEnergy: 0 };
      (await pcOrThrow().getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          out.packetsReceived += s.packetsReceived || 0; out.bytesReceived += s.bytesReceived || 0; out.totalAudioEnergy += s.totalAudioEnergy || 0;
        }
      });
      return out;
    },
    async report() {
      const out = [];
      (await pcOrThrow().getStats()).forEach((s) => out.push(JSON.parse(JSON.stringify(s))));
      return out;
    },
    heard() { return { ...st.heard }; },
    close() {
      if (st.pc) st.pc.close();
      if (st.stream) st.stream.getTracks().forEach((t) => t.stop());
      if (st.audioEl) st.audioEl.srcObject = null;
      for (const c of [st.ctx, st.meterCtx]) if (c) c.close().catch(() => {});
    },
  };
})();
`;

const PAGE_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>wa-sip-bridge WhatsApp user</title></head><body><script>${PAGE_SCRIPT}</script></body></html>`;

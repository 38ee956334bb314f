import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort, ManagedProcess } from './processes';
import { ToneDetector } from './tone';

/**
 * A real SIP desk phone for tests: baresip (Debian's 1.0.0 and later) on loopback, with a generated
 * config dir, a sine tone as its microphone (ausine), no sound card, and its ctrl_tcp module as the
 * remote control: netstring-framed JSON commands in, JSON responses and UA events out.
 *
 * Things to know about baresip 1.0.0 (checked against its source and on the wire):
 * - It always binds SIP on UDP and TCP at sip_listen's port and TLS at port+1 (no sip_transports
 *   setting yet); if any of the three is taken it exits with "Address already in use". start() picks
 *   ports with all three free and tries again if it loses a race.
 * - Incoming INVITEs are routed by the Request-URI user: it must be the account's user (see `uri`),
 *   or baresip answers 404. Its Contact user is `<user>-0x<pointer>`, not the plain user.
 * - DTMF is sent only as RFC 4733 telephone-events: `dtmfmode=info` (SIP INFO sending) arrived in
 *   1.1.0. Received DTMF is reported for both RFC 4733 and SIP INFO (application/dtmf-relay).
 * - `sndcode` queues digits; each lasts at least 9 packets (180 ms) plus 3 end packets, so a digit
 *   takes about 240 ms on the wire. telephone-event/8000 is always offered as PT 101.
 * - Only one ctrl_tcp client at a time, and events are sent only while it is connected. A command's
 *   response can arrive after the events it caused.
 * - A 1.0.0 that holds a call stops sending RTP although its SDP says sendonly, and one that is held
 *   (recvonly) sends none either: silence both ways, like phones with silence suppression. Audio
 *   resumes after resume(). (Seen on the wire with tshark, baresip against baresip.)
 * - During an RFC 4733 event it keeps sending audio too: event and audio packets interleave (one
 *   sequence, one SSRC).
 * - With answermode=auto there is no CALL_INCOMING event: the call's first event is CALL_REMOTE_SDP.
 *   Call commands (hold, resume, sndcode, mute, statmode) exist only while there is a call.
 * - ausine only runs at 48 kHz stereo (ausrc_srate/ausrc_channels are set for it; baresip resamples).
 *   aufile is a source only in 1.0.0, so there is no file player: no audio player is loaded at all,
 *   and with `record: true` the sndfile filter dumps the sent/received audio to WAV files instead.
 */

export type DtmfMode = 'rtpevent' | 'info';

export interface BaresipOptions {
  /** SIP user of the account (the Request-URI user it answers to). Default 'agent201'. */
  user?: string;
  /** Frequency of the tone it "says" (ausine). Default 1000 Hz. */
  toneHz?: number;
  /** auto: answers every incoming call at once; manual: waits for accept(). Default auto. */
  answer?: 'auto' | 'manual';
  /** How sendDigits sends: rtpevent (RFC 4733) or info (SIP INFO, baresip >= 1.1.0 only). */
  dtmfmode?: DtmfMode;
  /** Offered audio codecs, in order. Default PCMU then PCMA. telephone-event is always added. */
  codecs?: string[];
  /** Dump sent and received audio to WAV files (sndfile module) for recordedAudio()/heardTone(). */
  record?: boolean;
  /** Extra config lines (name → value), e.g. { jitter_buffer_delay: '0-20' }. */
  config?: Record<string, string>;
  /** Keep the config dir (and recordings) after stop(). */
  keepDir?: boolean;
  /** How long start() may take. Default 10 s. */
  startTimeoutMs?: number;
  /**
   * Register to a PBX as `user` (e.g. FreeSWITCH's internal profile, 127.0.0.1:port) with this
   * password: the account's AOR is then sip:user@registrar, as a desk phone's is. Default: no registration.
   */
  register?: { registrar: string; password: string };
}

/** A UA or call event as ctrl_tcp reports it, e.g. CALL_INCOMING, CALL_ESTABLISHED, CALL_DTMF_START. */
export interface BaresipEvent {
  type: string;
  class: string;
  param?: string;
  id?: string;
  direction?: 'incoming' | 'outgoing';
  peeruri?: string;
  accountaor?: string;
  /** performance.now() on arrival. */
  at: number;
  raw: Record<string, unknown>;
}

/** One SIP message from baresip's own trace (-s): what it sent ('out') or received ('in'). */
export interface SipTraceMessage {
  dir: 'in' | 'out';
  transport: string;
  src: string;
  dst: string;
  startLine: string;
  /** Request method, or for a response the method of its CSeq. */
  method: string;
  /** Response status; null for a request. */
  status: number | null;
  cseq: number;
  callId: string;
  /** Header values by lower-case full name (compact forms expanded). */
  headers: Record<string, string[]>;
  body: string;
  at: number;
}

export interface ReceivedDtmf {
  digit: string;
  at: number;
  callId?: string;
}

export interface ReinviteResult {
  status: number;
  offer: SipTraceMessage;
  response: SipTraceMessage;
}

const COMPACT: Record<string, string> = {
  i: 'call-id', m: 'contact', f: 'from', t: 'to', v: 'via', l: 'content-length', c: 'content-type', k: 'supported', s: 'subject', e: 'content-encoding',
};
const TRACE_START = '\x1b[36;1m#\n';
const TRACE_END = '\x1b[;m';
const MODULE_DIRS = ['/usr/lib/baresip/modules', '/usr/lib/x86_64-linux-gnu/baresip/modules', '/usr/local/lib/baresip/modules'];

let versionCache: { text: string; major: number; minor: number; patch: number } | null | undefined;

/** The a= direction of the (first) audio stream in an SDP body: sendrecv unless said otherwise. */
export function sdpDirection(sdp: string): 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive' {
  const lines = sdp.split(/\r?\n/);
  let inAudio = false;
  let session: string | null = null;
  let media: string | null = null;
  for (const l of lines) {
    if (l.startsWith('m=')) {
      if (inAudio) break;
      inAudio = l.startsWith('m=audio');
      continue;
    }
    const m = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/.exec(l);
    if (!m) continue;
    if (inAudio) media = m[1]!;
    else session ??= m[1]!;
  }
  return (media ?? session ?? 'sendrecv') as 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
}

function parseSipMessage(block: string, localSip: string): SipTraceMessage | null {
  const nl = block.indexOf('\n');
  const addr = /^(\w+) (\S+) -> (\S+)$/.exec(block.slice(0, nl).trim());
  if (!addr) return null;
  const msg = block.slice(nl + 1);
  const split = msg.indexOf('\r\n\r\n');
  const head = split >= 0 ? msg.slice(0, split) : msg;
  const body = split >= 0 ? msg.slice(split + 4) : '';
  const [startLine, ...headerLines] = head.split('\r\n');
  const headers: Record<string, string[]> = {};
  for (const h of headerLines) {
    const c = h.indexOf(':');
    if (c <= 0) continue;
    let name = h.slice(0, c).trim().toLowerCase();
    name = COMPACT[name] ?? name;
    (headers[name] ??= []).push(h.slice(c + 1).trim());
  }
  const cseq = /^(\d+)\s+(\S+)/.exec(headers['cseq']?.[0] ?? '');
  const resp = /^SIP\/2\.0 (\d{3})/.exec(startLine ?? '');
  return {
    dir: addr[3] === localSip ? 'in' : 'out',
    transport: addr[1]!,
    src: addr[2]!,
    dst: addr[3]!,
    startLine: startLine ?? '',
    method: resp ? (cseq?.[2] ?? '') : (startLine ?? '').split(' ')[0]!,
    status: resp ? Number(resp[1]) : null,
    cseq: cseq ? Number(cseq[1]) : -1,
    callId: headers['call-id']?.[0] ?? '',
    headers,
    body,
    at: performance.now(),
  };
}

async function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A UDP port whose TCP twin and TCP port+1 are free too (baresip binds all three). */
async function sipPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort('udp');
    if (p < 65535 && (await tcpFree(p)) && (await tcpFree(p + 1))) return p;
  }
  throw new Error('no free port for baresip SIP (UDP+TCP at p, TLS at p+1)');
}

export class Baresip extends EventEmitter {
  /** Whether a `baresip` executable is on PATH. */
  static available(): boolean {
    return (process.env.PATH ?? '').split(path.delimiter).some((d) => {
      try {
        fs.accessSync(path.join(d, 'baresip'), fs.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  }

  /** baresip's version as it prints it (e.g. '1.0.0'), or null if it is not there. */
  static version(): { text: string; major: number; minor: number; patch: number } | null {
    if (versionCache !== undefined) return versionCache;
    if (!Baresip.available()) return (versionCache = null);
    const r = spawnSync('baresip', ['-h'], { encoding: 'utf8', timeout: 5000 });
    const m = /baresip v(\d+)\.(\d+)\.(\d+)/.exec(`${r.stdout}${r.stderr}`);
    versionCache = m ? { text: `${m[1]}.${m[2]}.${m[3]}`, major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : null;
    return versionCache;
  }

  /** Whether this baresip can send DTMF as SIP INFO (account parameter dtmfmode, from 1.1.0). */
  static canSendInfoDtmf(): boolean {
    const v = Baresip.version();
    return !!v && (v.major > 1 || (v.major === 1 && v.minor >= 1));
  }

  readonly user: string;
  readonly toneHz: number;
  readonly dtmfmode: DtmfMode;
  readonly dir: string;
  sipPort = 0;
  ctrlPort = 0;
  proc: ManagedProcess | null = null;
  /** Every event ctrl_tcp reported, in order. */
  readonly events: BaresipEvent[] = [];
  /** Every SIP message baresip sent or received, from its trace. */
  readonly sip: SipTraceMessage[] = [];
  /** DTMF received (RFC 4733 or SIP INFO), one entry per key press (CALL_DTMF_START). */
  readonly digitsReceived: ReceivedDtmf[] = [];

  private readonly opts: BaresipOptions;
  private ctrl: net.Socket | null = null;
  private ctrlBuf = Buffer.alloc(0);
  private traceBuf = '';
  private tokenSeq = 0;
  private pending = new Map<string, { resolve: (data: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; what: string }>();
  private watchers: Array<() => void> = [];
  /** Index in `events` from which the current call's events count (moved by dial() and CALL_INCOMING). */
  private callStart = 0;
  private muted = false;
  private statusLineOff = false;
  private readonly callIds = new Set<string>();

  constructor(opts: BaresipOptions = {}) {
    super();
    this.opts = opts;
    this.user = opts.user ?? 'agent201';
    this.toneHz = opts.toneHz ?? 1000;
    this.dtmfmode = opts.dtmfmode ?? 'rtpevent';
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `wasb-baresip-${this.user}-`));
  }

  /** The SIP URI that reaches this phone, e.g. sip:agent201@127.0.0.1:40123. */
  get uri(): string {
    return `sip:${this.user}@127.0.0.1:${this.sipPort}`;
  }

  get sipAddress(): string {
    return `127.0.0.1:${this.sipPort}`;
  }

  get recordDir(): string {
    return path.join(this.dir, 'rec');
  }

  async start(): Promise<this> {
    if (this.dtmfmode === 'info' && !Baresip.canSendInfoDtmf()) {
      throw new Error(`baresip ${Baresip.version()?.text ?? '(not found)'} cannot send DTMF as SIP INFO: dtmfmode arrived in baresip 1.1.0. Use dtmfmode 'rtpevent', or SIPp to send INFO.`);
    }
    if (!Baresip.available()) throw new Error('baresip is not on PATH (Debian: apt-get install baresip-core)');
    const timeoutMs = this.opts.startTimeoutMs ?? 10000;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      this.sipPort = await sipPort();
      this.ctrlPort = await freePort('tcp');
      this.writeConfig();
      const proc = new ManagedProcess(`baresip ${this.user}`, 'baresip', ['-4', '-s', '-f', this.dir]);
      this.proc = proc;
      proc.child.stdout?.on('data', (b: Buffer) => this.onOutput(b.toString('utf8')));
      proc.exited.then((code) => this.onExit(code));
      try {
        await proc.waitFor(/baresip is ready\./, Math.max(1000, deadline - Date.now()));
        await this.connectCtrl(deadline);
        break;
      } catch (err) {
        await proc.stop();
        this.ctrl?.destroy();
        this.ctrl = null;
        if (attempt < 3 && /Address already in use/.test(proc.output) && Date.now() < deadline) continue;
        throw new Error(`baresip ${this.user} did not start: ${(err as Error).message}`);
      }
    }
    return this;
  }

  async stop(): Promise<void> {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`baresip ${this.user} stopped before "${p.what}" was answered`));
    }
    this.pending.clear();
    this.ctrl?.destroy();
    this.ctrl = null;
    await this.proc?.stop();
    if (!this.opts.keepDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** The tail of baresip's output and its latest events, for assertion messages. */
  describe(chars = 3000): string {
    const ev = this.events.slice(-15).map((e) => `${e.type}${e.param ? ` (${e.param})` : ''}`).join(', ');
    return `baresip ${this.user} events: ${ev}\n--- output ---\n${(this.proc?.output ?? '').replace(/\x1b\[[0-9;]*m/g, '').slice(-chars)}`;
  }

  /** Runs a baresip command (as typed in its menu, without the '/') and resolves with its output. */
  command(cmd: string, params?: string, timeoutMs = 5000): Promise<string> {
    const ctrl = this.ctrl;
    if (!ctrl) return Promise.reject(new Error(`baresip ${this.user} is not running`));
    const token = `t${++this.tokenSeq}`;
    const json = JSON.stringify(params === undefined ? { command: cmd, token } : { command: cmd, params, token });
    const what = `${cmd}${params ? ` ${params}` : ''}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new Error(`baresip ${this.user}: no response to "${what}" within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      this.pending.set(token, { resolve, reject, timer, what });
      ctrl.write(`${Buffer.byteLength(json)}:${json},`);
    });
  }

  /** Calls `uri` (e.g. the bridge's sip:+6281361905133@127.0.0.1:5060). */
  async dial(uri: string): Promise<void> {
    this.callStart = this.events.length;
    await this.command('dial', uri);
  }

  /** Answers the ringing incoming call (answer: 'manual'). */
  async accept(): Promise<void> {
    await this.command('accept');
  }

  /** Hangs up the current call (or cancels/refuses it while it rings). */
  async hangup(): Promise<void> {
    await this.command('hangup');
  }

  /**
   * Sends `digits` (0-9 * # A-D) in the current call. rtpevent: RFC 4733 in the RTP stream, about
   * 240 ms a digit, queued by baresip: this resolves when baresip took them, not when the last one
   * has gone out; wait for the far end to have them.
   */
  async sendDigits(digits: string, mode: DtmfMode = this.dtmfmode): Promise<void> {
    if (!/^[0-9*#A-Da-d]+$/.test(digits)) throw new Error(`not DTMF digits: ${JSON.stringify(digits)}`);
    if (mode !== this.dtmfmode) {
      throw new Error(`baresip ${this.user} sends DTMF as ${this.dtmfmode} (account dtmfmode is fixed when it starts); start one with { dtmfmode: '${mode}' }`);
    }
    if (mode === 'info' && !Baresip.canSendInfoDtmf()) throw new Error(`baresip ${Baresip.version()?.text} cannot send DTMF as SIP INFO`);
    await this.command('sndcode', digits);
  }

  /**
   * Registered with the PBX (`register` option): its REGISTER was answered 200. Read from its SIP
   * trace: the first registration happens at start-up, before ctrl_tcp has a client to report it to.
   */
  whenRegistered(timeoutMs = 10000): Promise<SipTraceMessage> {
    return this.waitSip((m) => m.dir === 'in' && m.method === 'REGISTER' && m.status === 200, { timeoutMs, what: '200 to its REGISTER' });
  }

  /** Blind transfer of the current call: a REFER to the far end with Refer-To `target` (e.g. sip:1001@pbx). */
  async transfer(target: string): Promise<void> {
    await this.command('transfer', target);
  }

  /** Puts the call on hold: a re-INVITE with a=sendonly. Resolves with its final response. */
  hold(timeoutMs = 5000): Promise<ReinviteResult> {
    return this.reinvite('hold', timeoutMs);
  }

  /** Takes the call off hold: a re-INVITE with a=sendrecv. */
  resume(timeoutMs = 5000): Promise<ReinviteResult> {
    return this.reinvite('resume', timeoutMs);
  }

  /** Mutes or unmutes the microphone (baresip keeps sending RTP, with silence in it). */
  async mute(on: boolean): Promise<void> {
    if (on === this.muted) return;
    await this.command('mute');
    this.muted = on;
  }

  /** Waits for an event of `type` (and matching `test`) at or after index `from` of `events`. */
  waitEvent(type: string, opts: { from?: number | (() => number); test?: (e: BaresipEvent) => boolean; timeoutMs?: number } = {}): Promise<BaresipEvent> {
    const from = opts.from ?? 0;
    const find = () => {
      const start = typeof from === 'function' ? from() : from;
      for (let i = start; i < this.events.length; i++) {
        const e = this.events[i]!;
        if (e.type === type && (!opts.test || opts.test(e))) return e;
      }
      return null;
    };
    return this.until(find, `event ${type}`, opts.timeoutMs ?? 10000);
  }

  /**
   * The first event of an incoming call, already arrived or the next one: CALL_INCOMING when it rings
   * (answer: 'manual'); with answermode=auto baresip 1.0.0 reports no CALL_INCOMING, and this is the
   * CALL_REMOTE_SDP (offer) it starts with. peeruri and id (the Call-ID) are set either way.
   */
  whenIncoming(timeoutMs = 10000): Promise<BaresipEvent> {
    const find = () => {
      for (let i = this.callStart; i < this.events.length; i++) if (this.events[i]!.direction === 'incoming' && this.events[i]!.id) return this.events[i]!;
      return null;
    };
    return this.until(find, 'an incoming call', timeoutMs);
  }

  /** The current call (the last dialled or arrived) is established. */
  whenEstablished(timeoutMs = 10000): Promise<BaresipEvent> {
    return this.waitEvent('CALL_ESTABLISHED', { from: () => this.callStart, timeoutMs });
  }

  /** The current call ended, for whatever reason (param says why, e.g. 'Connection reset by peer'). */
  whenClosed(timeoutMs = 10000): Promise<BaresipEvent> {
    return this.waitEvent('CALL_CLOSED', { from: () => this.callStart, timeoutMs });
  }

  /** Resolves once `n` DTMF digits have been received in all. */
  waitDigits(n: number, timeoutMs = 5000): Promise<string> {
    const find = () => (this.digitsReceived.length >= n ? this.digitsReceived.map((d) => d.digit).join('') : null);
    return this.until(find, () => `${n} DTMF digits (got "${this.digitsReceived.map((d) => d.digit).join('')}")`, timeoutMs);
  }

  /** Waits for a SIP message (from its trace) at or after index `from` of `sip` that passes `test`. */
  waitSip(test: (m: SipTraceMessage) => boolean, opts: { from?: number; timeoutMs?: number; what?: string } = {}): Promise<SipTraceMessage> {
    const find = () => {
      for (let i = opts.from ?? 0; i < this.sip.length; i++) if (test(this.sip[i]!)) return this.sip[i]!;
      return null;
    };
    return this.until(find, opts.what ?? 'SIP message', opts.timeoutMs ?? 10000);
  }

  /** SIP requests with this method, sent ('out') or received ('in'). */
  sipRequests(method: string, dir?: 'in' | 'out'): SipTraceMessage[] {
    return this.sip.filter((m) => m.status === null && m.method === method && (!dir || m.dir === dir));
  }

  /** WAV files the sndfile filter wrote (record: true): 'dec' is what it heard, 'enc' what it sent. */
  recordings(kind: 'dec' | 'enc' = 'dec'): string[] {
    if (!fs.existsSync(this.recordDir)) return [];
    return fs.readdirSync(this.recordDir).filter((f) => f.endsWith(`-${kind}.wav`)).sort().map((f) => path.join(this.recordDir, f));
  }

  /** The samples of the latest recording of `kind` (mono 16-bit; read while the call runs or after). */
  recordedAudio(kind: 'dec' | 'enc' = 'dec'): { samples: Int16Array; sampleRate: number } {
    const file = this.recordings(kind).pop();
    if (!file) throw new Error(`baresip ${this.user}: no ${kind} recording (start it with record: true; files appear when audio starts)`);
    const buf = fs.readFileSync(file);
    if (buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') throw new Error(`${file}: not a WAV file`);
    let off = 12;
    let sampleRate = 8000;
    let channels = 1;
    while (off + 8 <= buf.length) {
      const id = buf.toString('latin1', off, off + 4);
      const size = buf.readUInt32LE(off + 4);
      if (id === 'fmt ') {
        channels = buf.readUInt16LE(off + 10);
        sampleRate = buf.readUInt32LE(off + 12);
      }
      if (id === 'data') {
        // libsndfile fixes the size only when it closes the file: take whatever is there.
        const data = buf.subarray(off + 8, size > 0 && off + 8 + size <= buf.length ? off + 8 + size : buf.length);
        const n = Math.floor(data.length / 2 / channels);
        const samples = new Int16Array(n);
        for (let i = 0; i < n; i++) samples[i] = data.readInt16LE(i * 2 * channels);
        return { samples, sampleRate };
      }
      off += 8 + size + (size & 1);
    }
    throw new Error(`${file}: no data chunk`);
  }

  /** How many 20 ms frames of the latest recording carry a tone at `freq` (record: true). */
  heardTone(freq: number, kind: 'dec' | 'enc' = 'dec'): { framesWithTone: number; frames: number } {
    const { samples, sampleRate } = this.recordedAudio(kind);
    const det = new ToneDetector(freq);
    const frame = Math.round(sampleRate / 50);
    for (let i = 0; i + frame <= samples.length; i += frame) det.feed(samples.subarray(i, i + frame), sampleRate, i / sampleRate);
    return { framesWithTone: det.framesWithTone, frames: det.frames };
  }

  private async reinvite(cmd: 'hold' | 'resume', timeoutMs: number): Promise<ReinviteResult> {
    const mark = this.sip.length;
    await this.command(cmd);
    const offer = await this.waitSip((m) => m.dir === 'out' && m.status === null && m.method === 'INVITE', { from: mark, timeoutMs, what: `re-INVITE for ${cmd}` });
    const response = await this.waitSip(
      (m) => m.dir === 'in' && m.status !== null && m.status >= 200 && m.method === 'INVITE' && m.cseq === offer.cseq && m.callId === offer.callId,
      { from: mark, timeoutMs, what: `final response to the ${cmd} re-INVITE` },
    );
    if (response.status! >= 300) throw new Error(`baresip ${this.user}: ${cmd} re-INVITE refused: ${response.startLine}`);
    return { status: response.status!, offer, response };
  }

  private until<T>(find: () => T | null, what: string | (() => string), timeoutMs: number): Promise<T> {
    const label = () => (typeof what === 'function' ? what() : what);
    const found = find();
    if (found !== null) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const watcher = () => {
        const f = find();
        if (f === null) return;
        done();
        resolve(f);
      };
      const done = () => {
        clearTimeout(timer);
        this.watchers = this.watchers.filter((w) => w !== watcher && w !== onExit);
      };
      const onExit = () => {
        if (this.proc?.child.exitCode === null && this.proc.child.signalCode === null) return;
        done();
        reject(new Error(`baresip ${this.user} exited while waiting for ${label()}\n${this.describe()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`baresip ${this.user}: ${label()} not seen within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      this.watchers.push(watcher, onExit);
    });
  }

  private notify(): void {
    for (const w of this.watchers.slice()) w();
  }

  private onExit(code: number | null): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`baresip ${this.user} exited (${code}) before "${p.what}" was answered\n${this.describe()}`));
    }
    this.pending.clear();
    this.notify();
  }

  private writeConfig(): void {
    const moduleDir = MODULE_DIRS.find((d) => fs.existsSync(path.join(d, 'g711.so')));
    if (!moduleDir) throw new Error(`baresip modules not found in ${MODULE_DIRS.join(', ')}`);
    const record = this.opts.record ?? false;
    if (record) fs.mkdirSync(this.recordDir, { recursive: true });
    const conf: Array<[string, string]> = [
      ['poll_method', 'epoll'],
      ['sip_listen', `127.0.0.1:${this.sipPort}`],
      ['call_local_timeout', '120'],
      ['call_max_calls', '4'],
      ['audio_source', `ausine,${this.toneHz}`],
      // No player module is loaded: baresip then plays nothing (and needs no sound card).
      ['audio_player', 'none,none'],
      ['audio_alert', 'none,none'],
      ['ausrc_srate', '48000'],
      ['ausrc_channels', '2'],
      ['audio_buffer', '20-160'],
      // rtpengine of the test run uses 35000-35999.
      ['rtp_ports', '20000-34999'],
      ['rtp_timeout', '0'],
      ['jitter_buffer_delay', '0-20'],
      // Loopback only: SDP and media on 127.0.0.1, and a resolver that cannot leave the machine.
      ['net_interface', '127.0.0.1'],
      ['dns_server', '127.0.0.1:53'],
      ['module_path', moduleDir],
      ['module', 'g711.so'],
      ['module', 'ausine.so'],
      ...(record ? [['module', 'sndfile.so'], ['snd_path', this.recordDir]] as Array<[string, string]> : []),
      ['module_app', 'account.so'],
      ['module_app', 'menu.so'],
      ['module_app', 'ctrl_tcp.so'],
      ['ctrl_tcp_listen', `127.0.0.1:${this.ctrlPort}`],
    ];
    for (const [k, v] of Object.entries(this.opts.config ?? {})) {
      const i = conf.findIndex(([ck]) => ck === k && k !== 'module' && k !== 'module_app');
      if (i >= 0) conf[i] = [k, v];
      else conf.push([k, v]);
    }
    fs.writeFileSync(path.join(this.dir, 'config'), conf.map(([k, v]) => `${k.padEnd(24)}${v}`).join('\n') + '\n');
    const reg = this.opts.register;
    const params = [
      ...(reg ? [`auth_pass=${reg.password}`, 'regint=600'] : ['regint=0']),
      `answermode=${this.opts.answer ?? 'auto'}`,
      `audio_codecs=${(this.opts.codecs ?? ['PCMU/8000', 'PCMA/8000']).join(',')}`,
      'ptime=20',
      ...(this.dtmfmode === 'info' ? ['dtmfmode=info'] : []),
    ];
    const aor = reg ? `sip:${this.user}@${reg.registrar}` : `sip:${this.user}@127.0.0.1:${this.sipPort}`;
    fs.writeFileSync(path.join(this.dir, 'accounts'), `<${aor}>;${params.join(';')}\n`);
    fs.writeFileSync(path.join(this.dir, 'contacts'), '');
  }

  private connectCtrl(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        const sock = net.connect(this.ctrlPort, '127.0.0.1');
        sock.once('connect', () => {
          sock.removeAllListeners('error');
          sock.on('error', () => undefined);
          sock.on('data', (d) => this.onCtrlData(d));
          sock.on('close', () => {
            if (this.ctrl === sock) this.ctrl = null;
          });
          this.ctrl = sock;
          resolve();
        });
        sock.once('error', (err) => {
          sock.destroy();
          if (Date.now() > deadline || this.proc?.child.exitCode !== null) reject(new Error(`ctrl_tcp on 127.0.0.1:${this.ctrlPort}: ${err.message}`));
          else setTimeout(attempt, 50);
        });
      };
      attempt();
    });
  }

  private onCtrlData(d: Buffer): void {
    this.ctrlBuf = Buffer.concat([this.ctrlBuf, d]);
    for (;;) {
      const colon = this.ctrlBuf.indexOf(0x3a);
      if (colon < 0) return;
      const len = Number(this.ctrlBuf.subarray(0, colon).toString('latin1'));
      if (!Number.isInteger(len)) {
        this.ctrlBuf = Buffer.alloc(0); // out of step: drop and wait for the next message
        return;
      }
      if (this.ctrlBuf.length < colon + 1 + len + 1) return;
      const text = this.ctrlBuf.subarray(colon + 1, colon + 1 + len).toString('utf8');
      this.ctrlBuf = this.ctrlBuf.subarray(colon + 2 + len);
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (msg.response) this.onResponse(msg);
      else if (msg.event) this.onEvent(msg);
    }
  }

  private onResponse(msg: Record<string, unknown>): void {
    const p = this.pending.get(String(msg.token));
    if (!p) return;
    this.pending.delete(String(msg.token));
    clearTimeout(p.timer);
    if (msg.ok === false) p.reject(new Error(`baresip ${this.user}: "${p.what}" failed: ${String(msg.data ?? '')}`));
    else p.resolve(String(msg.data ?? ''));
  }

  private onEvent(msg: Record<string, unknown>): void {
    const str = (k: string) => (typeof msg[k] === 'string' ? (msg[k] as string) : undefined);
    const ev: BaresipEvent = {
      type: str('type') ?? '',
      class: str('class') ?? '',
      param: str('param'),
      id: str('id'),
      direction: str('direction') as BaresipEvent['direction'],
      peeruri: str('peeruri'),
      accountaor: str('accountaor'),
      at: performance.now(),
      raw: msg,
    };
    if (ev.id && !this.callIds.has(ev.id)) {
      this.callIds.add(ev.id);
      // A new incoming call starts here. (With answermode=auto, 1.0.0 sends no CALL_INCOMING at all:
      // the first event of such a call is CALL_REMOTE_SDP with param 'offer'.)
      if (ev.direction === 'incoming') this.callStart = this.events.length;
    }
    if (ev.type === 'CALL_CLOSED') this.muted = false;
    if (ev.type === 'CALL_ESTABLISHED' && !this.statusLineOff) {
      // The status line menu prints several times a second during calls is noise in failure reports.
      // statmode is a call command (only there during a call) and toggles for good.
      this.statusLineOff = true;
      this.command('statmode').catch(() => undefined);
    }
    this.events.push(ev);
    if (ev.type === 'CALL_DTMF_START' && ev.param) this.digitsReceived.push({ digit: ev.param, at: ev.at, callId: ev.id });
    this.emit('event', ev);
    this.notify();
  }

  private onOutput(text: string): void {
    this.traceBuf += text;
    for (;;) {
      const start = this.traceBuf.indexOf(TRACE_START);
      if (start < 0) {
        this.traceBuf = this.traceBuf.slice(-TRACE_START.length);
        return;
      }
      const end = this.traceBuf.indexOf(TRACE_END, start + TRACE_START.length);
      if (end < 0) {
        this.traceBuf = this.traceBuf.slice(start);
        if (this.traceBuf.length > 1_000_000) this.traceBuf = '';
        return;
      }
      const msg = parseSipMessage(this.traceBuf.slice(start + TRACE_START.length, end), this.sipAddress);
      this.traceBuf = this.traceBuf.slice(end + TRACE_END.length);
      if (msg) {
        this.sip.push(msg);
        this.emit('sip', msg);
        this.notify();
      }
    }
  }
}

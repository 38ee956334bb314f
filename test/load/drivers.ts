import { performance } from 'node:perf_hooks';
import { newWacid, SimOutboundCall, SimRequest, YCloudSim } from '../harness/ycloud-sim';
import { RtpSource } from './rtp-source';
import { WaEngine } from './wa-engine';

/** What happened to one call of the load run (times: performance.now() of this process, ms). */
export interface CallResult {
  direction: 'inbound' | 'outbound';
  /** Customer number: unique per call, the key of outbound calls before YCloud names them. */
  customer: string;
  wacid: string | null;
  /** Inbound: connect webhook sent; outbound: calls/connect reached the simulator. */
  startedAt?: number;
  preAcceptAt?: number;
  acceptAt?: number;
  /** Outbound: the ACCEPTED webhook sent. */
  acceptedSentAt?: number;
  /** Packets the WhatsApp side received from the bridge, and the bridge from the WhatsApp side, by the hold's end. */
  packetsFromBridge?: number;
  failure: string | null;
}

export class Failure extends Error {}

/** Everything a call driver needs, and the live count of calls with media up. */
export class LoadContext {
  active = 0;
  readonly results: CallResult[] = [];
  private readonly seen = new Map<string, SimRequest>();
  private readonly waiters = new Map<string, (r: SimRequest) => void>();

  constructor(readonly sim: YCloudSim, readonly wa: WaEngine, readonly source: RtpSource, readonly sourcePort: number, readonly holdMs: number, readonly setupTimeoutMs: number) {
    sim.setMaxListeners(0);
    sim.on('request', (r: SimRequest) => {
      const id = typeof r.body.wacid === 'string' ? r.body.wacid : typeof r.body.to === 'string' ? r.body.to : null;
      if (!id) return;
      const key = `${r.path} ${id}`;
      if (this.seen.has(key)) return;
      this.seen.set(key, r);
      this.waiters.get(key)?.(r);
      this.waiters.delete(key);
    });
  }

  /** The first request to `path` for `id` (wacid, or the customer number for calls/connect), within the setup timeout. */
  request(path: string, id: string, what: string): Promise<SimRequest> {
    const key = `${path} ${id}`;
    const seen = this.seen.get(key);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(key);
        reject(new Failure(`no ${what} within ${this.setupTimeoutMs / 1000} s`));
      }, this.setupTimeoutMs);
      this.waiters.set(key, (r) => {
        clearTimeout(t);
        resolve(r);
      });
    });
  }

  /** Holds the call with media up, then checks that audio came back through the bridge (PBX echo). */
  async hold(r: CallResult, callId: string): Promise<void> {
    this.active++;
    try {
      await new Promise((res) => setTimeout(res, this.holdMs));
      const p = await this.wa.packets(callId);
      r.packetsFromBridge = p.fromBridge;
      // 50 packets/s each way; the echo comes back once accept has unblocked the PBX leg, which may take a
      // moment under load: the first second is not counted, and at most a fifth of the rest may be missing.
      const expected = Math.max(0, this.holdMs / 1000 - 1) * 50;
      if (expected > 0 && p.fromBridge < expected * 0.8) throw new Failure(`audio: over 20 % of the packets from the bridge missing (${p.fromBridge} in ${this.holdMs / 1000} s)`);
    } finally {
      this.active--;
    }
  }
}

/** One WhatsApp user calling the business, held for the hold time, then hanging up. */
export async function inboundCall(ctx: LoadContext, i: number): Promise<CallResult> {
  const r: CallResult = { direction: 'inbound', customer: `+62813${String(i).padStart(7, '0')}`, wacid: newWacid(), failure: null };
  ctx.results.push(r);
  const wacid = r.wacid!;
  const callId = `in-${i}`;
  let connected = false;
  try {
    const offer = await ctx.wa.userOffer(callId, ctx.sourcePort);
    let answerFailed: string | null = null;
    const user = {
      createOffer: async () => offer,
      // Runs inside the simulator's preAccept handler: a failure is the call's, not the simulator's.
      applyAnswer: async (sdp: string) => {
        try {
          ctx.source.add(callId, await ctx.wa.userGetsAnswer(callId, sdp));
        } catch (err) {
          answerFailed = `WhatsApp-side rtpengine could not take the bridge's answer: ${(err as Error).message}`;
        }
      },
    };
    r.startedAt = performance.now();
    const { status } = await ctx.sim.userCalls(user, { offer, wacid, from: r.customer });
    if (status !== 200) throw new Failure(`connect webhook answered ${status}`);
    connected = true;
    r.preAcceptAt = (await ctx.request('/calls/preAccept', wacid, 'preAccept')).at;
    r.acceptAt = (await ctx.request('/calls/accept', wacid, 'accept')).at;
    if (answerFailed) throw new Failure(answerFailed);
    await ctx.hold(r, callId);
  } catch (err) {
    r.failure = err instanceof Failure ? err.message : `error: ${(err as Error).message}`;
  } finally {
    if (connected) await ctx.sim.userHangsUp(wacid).catch(() => undefined);
    ctx.source.remove(callId);
    await ctx.wa.delete(callId);
  }
  return r;
}

/** The WhatsApp user's side of an agent's call: answers at once, holds, hangs up. Runs as the simulator's outbound script. */
export async function outboundAnswer(ctx: LoadContext, call: SimOutboundCall, r: CallResult): Promise<void> {
  r.wacid = call.wacid;
  const callId = `out-${call.wacid}`;
  try {
    r.startedAt = (await ctx.request('/calls/connect', call.to, 'calls/connect')).at;
    const { answer, port } = await ctx.wa.userAnswers(callId, call.offer, ctx.sourcePort);
    ctx.source.add(callId, port);
    const sim = ctx.sim;
    for (const ev of [sim.outboundConnect(call, answer), sim.outboundStatus(call, 'RINGING')]) {
      const status = await sim.deliver(ev);
      if (status !== 200) throw new Failure(`webhook answered ${status}`);
    }
    r.acceptedSentAt = performance.now();
    const status = await sim.deliverAccepted(call);
    if (status !== 200) throw new Failure(`ACCEPTED webhook answered ${status}`);
    await ctx.hold(r, callId);
  } catch (err) {
    r.failure = err instanceof Failure ? err.message : `error: ${(err as Error).message}`;
  } finally {
    await ctx.sim.deliver(ctx.sim.outboundTerminate(call, 'COMPLETED')).catch(() => undefined);
    ctx.source.remove(callId);
    await ctx.wa.delete(callId);
  }
}

/** Starts `calls` calls at `rate` per second, at most `concurrency` at once; resolves when all are done. */
export async function paced<T>(calls: number, rate: number, concurrency: number, start: (i: number) => Promise<T>): Promise<T[]> {
  const t0 = performance.now();
  const running = new Set<Promise<T>>();
  const all: Array<Promise<T>> = [];
  for (let i = 0; i < calls; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    while (running.size >= concurrency) await Promise.race(running);
    const p = start(i);
    running.add(p);
    void p.finally(() => running.delete(p));
    all.push(p);
  }
  return Promise.all(all);
}

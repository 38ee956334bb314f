import { startStack } from '../harness/bridge';
import { infra, startInfra, stopInfra } from '../harness/infra';
import { RtpPhone } from '../harness/rtp-phone';
import { startSippUas } from '../harness/sipp';
import { WaUser } from '../harness/wa-user';

/**
 * Latency benchmark over real parts on loopback: N inbound calls, one after another. Prints, in ms,
 * connect webhook arrival -> preAccept sent, and PBX 200 OK -> accept sent (median, p95, max).
 * Usage: node dist/test/bench/latency.js [calls=50]
 */
async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 50);
  await startInfra();
  if (!infra.drachtio) throw new Error(infra.drachtioMissing ?? 'no drachtio');
  const phone = new RtpPhone(1000, 440);
  const sipp = await startSippUas('uas-answer.xml', { calls, rtpPort: await phone.start() });
  const stack = await startStack({ PBX_TARGET: sipp.uri });
  const toPreAccept: number[] = [];
  const toAccept: number[] = [];
  try {
    for (let i = 0; i < calls; i++) {
      const user = new WaUser(440, 1000);
      const { wacid } = await stack.sim.userCalls(user);
      const [arrived, preAccept, answered, accept] = await Promise.all([
        stack.marks.waitFor(wacid, 'webhook_received'),
        stack.marks.waitFor(wacid, 'preaccept_sent'),
        stack.marks.waitFor(wacid, 'pbx_answered'),
        stack.marks.waitFor(wacid, 'accept_sent'),
      ]);
      toPreAccept.push(preAccept.t - arrived.t);
      toAccept.push(accept.t - answered.t);
      await stack.sim.waitForRequest('/calls/accept', wacid);
      await stack.sim.userHangsUp(wacid);
      await stack.bridge.calls.whenEnded(wacid);
      user.close();
    }
    await sipp.done;
  } finally {
    phone.stop();
    await sipp.proc.stop();
    await stack.stop();
    await stopInfra();
  }
  const line = (name: string, xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
    console.log(`${name.padEnd(44)} n=${s.length}  median=${q(0.5).toFixed(2)} ms  p95=${q(0.95).toFixed(2)} ms  max=${s[s.length - 1]!.toFixed(2)} ms`);
  };
  console.log(`inbound call latency over ${calls} calls (rtpengine, drachtio-server, SIPp, libwebrtc user, YCloud simulator on loopback)`);
  line('connect webhook arrival -> preAccept sent', toPreAccept);
  line('PBX 200 OK (dialog up) -> accept sent', toAccept);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

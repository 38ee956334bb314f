import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mixdown } from '../../src/recording/mixdown';
import { parseRecordingMeta } from '../../src/recording/recording-meta';
import { syntheticCall, syntheticSdps } from '../harness/pcap-writer';

/**
 * What recording costs per call (pcap method): the spool pcap's size per minute of call, the WAV's,
 * and the CPU the bridge spends turning one into the other (in its worker thread).
 * Usage: node dist/test/bench/recording.js [minutes=5] [runs=5]
 */
function main(): void {
  const minutes = Number(process.argv[2] ?? 5);
  const runs = Number(process.argv[3] ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-bench-rec-'));
  try {
    const pcap = syntheticCall(minutes * 60, { waPort: 30000, pbxPort: 30010, userTone: 440, agentTone: 1000 });
    const legs = parseRecordingMeta(syntheticSdps(30000, 30010).join('\n')).legs;
    const cpu: number[] = [];
    let wavBytes = 0;
    for (let i = 0; i < runs; i++) {
      const before = process.cpuUsage();
      wavBytes = mixdown(pcap, legs, path.join(dir, 'call.wav')).bytes;
      const used = process.cpuUsage(before);
      cpu.push((used.user + used.system) / 1000);
    }
    cpu.sort((a, b) => a - b);
    const median = cpu[Math.floor(cpu.length / 2)]!;
    const mb = (b: number) => (b / 1e6 / minutes).toFixed(2);
    console.log(`call of ${minutes} min (opus 20 ms from WhatsApp, PCMU 20 ms from the PBX), ${runs} runs`);
    console.log(`spool pcap            ${mb(pcap.length)} MB per call-minute (deleted after conversion)`);
    console.log(`stereo WAV, 8 kHz     ${mb(wavBytes)} MB per call-minute (kept for RECORDING_RETENTION_DAYS)`);
    console.log(`mixdown CPU           ${(median / minutes).toFixed(0)} ms per call-minute (median; min ${(cpu[0]! / minutes).toFixed(0)}, max ${(cpu[cpu.length - 1]! / minutes).toFixed(0)})`);
    console.log(`                      = ${((median / minutes) / 600).toFixed(2)}% of one core per recorded call, spread over its length`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();

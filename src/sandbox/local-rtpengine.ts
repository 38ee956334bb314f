import { freePort, ManagedProcess } from './processes';

/** A private rtpengine on loopback: its own ng port and media port range, userspace only. */
export interface RtpengineOptions {
  portMin?: number;
  portMax?: number;
  /** rtpengine --interface values; default: the bridge's two logical interfaces, both on 127.0.0.1. */
  interfaces?: string[];
  /** rtpengine --recording-dir: calls may be recorded (pcap method, userspace) into this spool directory. */
  recordingDir?: string;
  /** The binary (default: `rtpengine` on PATH). */
  bin?: string;
}

export interface RtpengineInstance { ng: { host: string; port: number }; dtmfLog: { host: string; port: number }; proc: ManagedProcess }

export async function startRtpengine(o: RtpengineOptions = {}): Promise<RtpengineInstance> {
  const { portMin = 35000, portMax = 35999, interfaces = ['wa/127.0.0.1', 'pbx/127.0.0.1'], recordingDir } = o;
  const ngPort = await freePort('udp');
  // rtpengine sends each DTMF event it sees here as JSON; the bridge under test listens on it.
  const dtmfPort = await freePort('udp');
  const proc = new ManagedProcess('rtpengine', o.bin ?? 'rtpengine', [
    '--config-file=none',
    '--table=-1',
    ...interfaces.map((i) => `--interface=${i}`),
    `--listen-ng=127.0.0.1:${ngPort}`,
    `--dtmf-log-dest=127.0.0.1:${dtmfPort}`,
    `--port-min=${portMin}`,
    `--port-max=${portMax}`,
    '--foreground',
    '--log-stderr',
    `--log-level=${process.env.WASB_RTPENGINE_LOG ?? 6}`,
    '--delete-delay=0',
    '--timeout=60',
    // Listening-quality MOS: computed from each party's receiver reports alone (as docker-compose.yml runs it).
    '--mos=LQ',
    ...(recordingDir ? [`--recording-dir=${recordingDir}`, '--recording-method=pcap'] : []),
  ]);
  await proc.waitFor(/Startup complete/, 10000);
  return { ng: { host: '127.0.0.1', port: ngPort }, dtmfLog: { host: '127.0.0.1', port: dtmfPort }, proc };
}

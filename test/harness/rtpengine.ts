import { freePort, ManagedProcess } from './processes';

/** A private rtpengine on loopback: its own ng port and media port range, userspace only. */
export async function startRtpengine(portMin = 35000, portMax = 35999): Promise<{ ng: { host: string; port: number }; dtmfLog: { host: string; port: number }; proc: ManagedProcess }> {
  const ngPort = await freePort('udp');
  // rtpengine sends each DTMF event it sees here as JSON; the bridge under test listens on it.
  const dtmfPort = await freePort('udp');
  const proc = new ManagedProcess('rtpengine', 'rtpengine', [
    '--config-file=none',
    '--table=-1',
    '--interface=127.0.0.1',
    `--listen-ng=127.0.0.1:${ngPort}`,
    `--dtmf-log-dest=127.0.0.1:${dtmfPort}`,
    `--port-min=${portMin}`,
    `--port-max=${portMax}`,
    '--foreground',
    '--log-stderr',
    '--log-level=6',
    '--delete-delay=0',
    '--timeout=60',
  ]);
  await proc.waitFor(/Startup complete/, 10000);
  return { ng: { host: '127.0.0.1', port: ngPort }, dtmfLog: { host: '127.0.0.1', port: dtmfPort }, proc };
}

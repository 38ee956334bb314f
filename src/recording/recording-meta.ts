/**
 * rtpengine's recording metadata file (pcap method): the pcap's path on the first line, then each SDP
 * rtpengine sent out. An SDP rtpengine sent to a leg names rtpengine's own port on that leg and the
 * payload types that leg uses, which is what tells whose packets are whose in the pcap.
 */
export interface LegMedia {
  /** rtpengine's port facing this leg (the packets' destination port in the pcap). */
  port: number;
  /** WebRTC (the WhatsApp user) or plain RTP (the PBX). */
  side: 'whatsapp' | 'pbx';
  /** Payload type -> encoding name and clock rate, from a=rtpmap (and the static types). */
  codecs: Map<number, { name: string; clock: number; channels: number }>;
}

const STATIC_TYPES: Record<number, { name: string; clock: number; channels: number }> = {
  0: { name: 'PCMU', clock: 8000, channels: 1 },
  8: { name: 'PCMA', clock: 8000, channels: 1 },
  9: { name: 'G722', clock: 8000, channels: 1 },
};

export interface RecordingMeta { pcapPath: string | null; legs: LegMedia[] }

export function parseRecordingMeta(text: string): RecordingMeta {
  const lines = text.split(/\r?\n/);
  const pcapPath = lines[0]?.trim().endsWith('.pcap') ? lines[0].trim() : null;
  const byPort = new Map<number, LegMedia>();
  let current: LegMedia | null = null;
  for (const line of lines) {
    const m = /^m=audio (\d+) (\S+) ([\d ]+)/.exec(line);
    if (m) {
      const port = Number(m[1]);
      const side = /SAVPF|UDP\/TLS/.test(m[2]!) ? 'whatsapp' : 'pbx';
      current = byPort.get(port) ?? { port, side, codecs: new Map() };
      current.side = side;
      for (const pt of m[3]!.trim().split(/\s+/).map(Number)) {
        const known = STATIC_TYPES[pt];
        if (known && !current.codecs.has(pt)) current.codecs.set(pt, known);
      }
      if (port > 0) byPort.set(port, current);
      continue;
    }
    if (/^m=/.test(line)) {
      current = null;
      continue;
    }
    if (/^a=ice-ufrag:|^a=fingerprint:/.test(line) && current) current.side = 'whatsapp';
    const r = /^a=rtpmap:(\d+) ([^/\s]+)\/(\d+)(?:\/(\d+))?/.exec(line);
    if (r && current) current.codecs.set(Number(r[1]), { name: r[2]!.toUpperCase(), clock: Number(r[3]), channels: Number(r[4] ?? 1) });
  }
  return { pcapPath, legs: [...byPort.values()] };
}

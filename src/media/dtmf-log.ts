import dgram from 'node:dgram';
import { Logger } from '../log';
import { TypedEmitter } from '../util/typed-emitter';
import { eventDigit } from './rtp-packets';

/** A digit rtpengine saw in a call's media (RFC 4733 event, or an in-band tone when decoding). */
export interface DtmfEvent { callId: string; sourceTag: string; digit: string; durationMs: number; volume: number }

/** Parses one datagram of rtpengine's `--dtmf-log-dest` JSON; null if it is not a DTMF event. */
export function parseDtmfLog(text: string): DtmfEvent | null {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  if (r.type !== 'DTMF' || typeof r.callid !== 'string' || typeof r.source_tag !== 'string' || typeof r.event !== 'number') return null;
  const digit = eventDigit(r.event);
  if (!digit) return null;
  return { callId: r.callid, sourceTag: r.source_tag, digit, durationMs: typeof r.duration === 'number' ? r.duration : 0, volume: typeof r.volume === 'number' ? r.volume : 0 };
}

/**
 * Receives rtpengine's DTMF log (rtpengine started with `--dtmf-log-dest=HOST:PORT` pointing here),
 * so the bridge knows each digit a caller pressed: for the call's timeline, and to send it to the
 * PBX by SIP INFO when the PBX wants that.
 */
export class DtmfLogListener extends TypedEmitter<{ digit: [DtmfEvent] }> {
  private readonly socket = dgram.createSocket('udp4');

  constructor(private readonly log: Logger) {
    super();
    this.socket.on('message', (msg) => {
      const ev = parseDtmfLog(msg.toString('utf8'));
      if (ev) this.emit('digit', ev);
      else this.log.debug({ text: msg.toString('utf8').slice(0, 200) }, 'ignored a datagram on the DTMF log port');
    });
    this.socket.on('error', (err) => this.log.warn({ err }, 'DTMF log socket error'));
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(port, host, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // not bound
    }
  }
}

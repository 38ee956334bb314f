/** Command-line options of `npm run load` (see docs/load.md). */

export type Direction = 'inbound' | 'outbound' | 'mixed';
export type WaCodec = 'opus' | 'pcmu';

export interface LoadOptions {
  /** New calls per second (both directions together). */
  rate: number;
  /** Calls up at once at most (both directions together). */
  concurrency: number;
  /** Seconds each call stays up once answered. */
  holdS: number;
  /** Calls in all. */
  calls: number;
  direction: Direction;
  /** What the simulated WhatsApp side sends: opus (as WhatsApp always has), or G.711 (PCMU/PCMA) only. */
  waCodec: WaCodec;
  /** The bridge's MEDIA_CODEC_POLICY. */
  codecPolicy: 'transcode' | 'prefer-g711';
  /**
   * Who makes the WhatsApp side's opus: `source` (default) sends opus encoded once up front, so the
   * WhatsApp-side rtpengine only does ICE, DTLS and SRTP; `rtpengine` sends PCMU and lets the
   * WhatsApp-side rtpengine transcode (as costly as the bridge's own, so the load generator needs as
   * much CPU as the system under test).
   */
  waOpusBy: 'source' | 'rtpengine';
  /** Extra opus encoder options for the WhatsApp-side rtpengine with `waOpusBy` rtpengine (e.g. "complexity=2"). */
  waOpusOptions: string;
  /** The bridge's LOG_LEVEL. */
  logLevel: string;
  /** Write a V8 CPU profile of the bridge process into this directory (node --cpu-prof); empty: none. */
  bridgeCpuProf: string;
  /** Longest a call may take from its connect webhook (or INVITE) to answered, in seconds. */
  setupTimeoutS: number;
}

const DEFAULTS: LoadOptions = {
  rate: 10, concurrency: 50, holdS: 30, calls: 50, direction: 'inbound', waCodec: 'opus', codecPolicy: 'transcode',
  waOpusBy: 'source', waOpusOptions: '', logLevel: 'warn', setupTimeoutS: 30, bridgeCpuProf: '',
};

export const USAGE = `usage: npm run load -- [--rate N] [--concurrency N] [--hold S] [--calls N]
  [--direction inbound|outbound|mixed] [--wa-codec opus|pcmu] [--codec-policy transcode|prefer-g711]
  [--wa-opus-by source|rtpengine] [--wa-opus-options complexity=N] [--log-level LEVEL] [--setup-timeout S] [--bridge-cpu-prof DIR]`;

export function parseOptions(argv: string[]): LoadOptions {
  const o: LoadOptions = { ...DEFAULTS };
  const num = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min} (got "${v}")\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!flag.startsWith('--') || value === undefined) throw new Error(`bad argument "${flag}"\n${USAGE}`);
    i++;
    switch (flag.slice(2)) {
      case 'rate': o.rate = num('rate', value, 0.01); break;
      case 'concurrency': o.concurrency = Math.floor(num('concurrency', value, 1)); break;
      case 'hold': o.holdS = num('hold', value, 0); break;
      case 'calls': o.calls = Math.floor(num('calls', value, 1)); break;
      case 'setup-timeout': o.setupTimeoutS = num('setup-timeout', value, 1); break;
      case 'direction':
        if (value !== 'inbound' && value !== 'outbound' && value !== 'mixed') throw new Error(`--direction must be inbound, outbound or mixed\n${USAGE}`);
        o.direction = value;
        break;
      case 'wa-codec':
        if (value !== 'opus' && value !== 'pcmu') throw new Error(`--wa-codec must be opus or pcmu\n${USAGE}`);
        o.waCodec = value;
        break;
      case 'codec-policy':
        if (value !== 'transcode' && value !== 'prefer-g711') throw new Error(`--codec-policy must be transcode or prefer-g711\n${USAGE}`);
        o.codecPolicy = value;
        break;
      case 'wa-opus-by':
        if (value !== 'source' && value !== 'rtpengine') throw new Error(`--wa-opus-by must be source or rtpengine\n${USAGE}`);
        o.waOpusBy = value;
        break;
      case 'wa-opus-options': o.waOpusOptions = value; break;
      case 'log-level': o.logLevel = value; break;
      case 'bridge-cpu-prof': o.bridgeCpuProf = value; break;
      default: throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  return o;
}

/** How the calls, rate and concurrency split between the directions (mixed: half each, inbound gets the odd one). */
export function split(o: LoadOptions): { inbound: { calls: number; rate: number; concurrency: number }; outbound: { calls: number; rate: number; concurrency: number } } {
  const share = (f: number) => ({ calls: Math.round(o.calls * f), rate: o.rate * f, concurrency: Math.max(1, Math.round(o.concurrency * f)) });
  if (o.direction === 'inbound') return { inbound: share(1), outbound: { calls: 0, rate: 0, concurrency: 0 } };
  if (o.direction === 'outbound') return { inbound: { calls: 0, rate: 0, concurrency: 0 }, outbound: share(1) };
  const inbound = { calls: Math.ceil(o.calls / 2), rate: o.rate / 2, concurrency: Math.max(1, Math.ceil(o.concurrency / 2)) };
  return { inbound, outbound: { calls: o.calls - inbound.calls, rate: o.rate / 2, concurrency: Math.max(1, o.concurrency - inbound.concurrency) } };
}

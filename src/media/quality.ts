import { NgResponse } from 'rtpengine-client';
import { ngNumber as num, ngRecord as rec, queryTags } from './ng-answer';

/**
 * Call quality from rtpengine's RTCP statistics. rtpengine (with `generate RTCP` on the call and
 * --mos=LQ) turns each receiver report a party sends into jitter, packet loss, round-trip time and an
 * estimated MOS, kept under the reporter's SSRC, which is the SSRC of the media that party sends: so
 * the entry under a leg's incoming SSRC says how that leg's party hears the call (seen in rtpengine
 * 10.5's debug log: "RR from <PBX's SSRC> about <rtpengine's SSRC toward the PBX>").
 */
export interface LegQuality {
  /** Average MOS over the call's reports (1.0-5.0). */
  mos: number;
  /** The lowest MOS of any report. */
  mosMin: number;
  /** Average interarrival jitter, ms. */
  jitterMs: number;
  /** Average share of packets lost between reports, %. */
  packetLossPct: number;
  /** Packets lost over the whole call, as the party last reported it. */
  packetsLost: number;
  /** Round trip between rtpengine and this party, ms (null when the party's reports gave none). */
  rttMs: number | null;
  /** How many receiver reports the figures come from. */
  reports: number;
}

/** The call's figures for its CDR columns: its worst leg's, and the round trip from end to end. */
export interface CallQuality { mos: number; packetLossPct: number; jitterMs: number; rttMs: number | null }


/** Each leg's incoming SSRCs, from the `query` answer's streams (leg names from `labels`, by tag). */
function ssrcsByLeg(res: NgResponse, labels: Record<string, string>): Map<number, string> {
  const out = new Map<number, string>();
  for (const { tag, medias } of queryTags(res)) {
    const leg = labels[tag] ?? tag;
    for (const { streams } of medias) {
      for (const { SSRC } of streams) if (typeof SSRC === 'number') out.set(SSRC, leg);
    }
  }
  return out;
}

/** Per-leg quality from a `query` answer. A leg without receiver reports (a PBX that sends no RTCP) is left out. */
export function legQuality(res: NgResponse, labels: Record<string, string>): Record<string, LegQuality> {
  const sources = ssrcsByLeg(res, labels);
  const out: Record<string, LegQuality> = {};
  for (const [ssrc, raw] of Object.entries(rec(res.SSRC))) {
    const leg = sources.get(Number(ssrc));
    if (!leg) continue;
    const avg = rec(rec(raw)['average MOS']);
    const low = rec(rec(raw)['lowest MOS']);
    const reports = num(avg.samples) || 1;
    if (!num(avg.MOS)) continue;
    const rttUs = num(avg['round-trip time leg']);
    const q: LegQuality = {
      mos: round(num(avg.MOS) / 10, 2),
      mosMin: round(num(low.MOS || avg.MOS) / 10, 2),
      jitterMs: round(num(avg.jitter), 2),
      packetLossPct: round(num(avg['packet loss']), 2),
      packetsLost: num(rec(raw)['cumulative loss']),
      rttMs: rttUs > 0 ? round(rttUs / 1000, 2) : null,
      reports,
    };
    const seen = out[leg];
    // Several SSRCs for one leg (a new stream after a transfer): keep the one with more reports.
    if (!seen || seen.reports < q.reports) out[leg] = q;
  }
  return out;
}

/** The CDR's call-level figures: the worst leg's MOS, loss and jitter; the legs' round trips added up. */
export function callQuality(legs: Record<string, LegQuality>): CallQuality | null {
  const all = Object.values(legs);
  if (all.length === 0) return null;
  const rtts = all.map((l) => l.rttMs).filter((r): r is number => r !== null);
  return {
    mos: Math.min(...all.map((l) => l.mos)),
    packetLossPct: Math.max(...all.map((l) => l.packetLossPct)),
    jitterMs: Math.max(...all.map((l) => l.jitterMs)),
    rttMs: rtts.length ? round(rtts.reduce((a, b) => a + b, 0), 2) : null,
  };
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

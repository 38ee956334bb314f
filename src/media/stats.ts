import { NgResponse } from 'rtpengine-client';
import { ngNumber as num, ngRecord as rec, queryTags } from './ng-answer';
import { legQuality, LegQuality } from './quality';
import { NgAddress } from './rtpengine';

export interface LegStats { packets: number; bytes: number; errors: number; codec: string | null }
export interface MediaStats {
  /** What rtpengine received from each leg (RTP), plus its overall totals. */
  legs: Record<string, LegStats>;
  totals: { rtp: { packets: number; bytes: number; errors: number }; rtcp: { packets: number; bytes: number; errors: number } } | null;
  durationSeconds: number | null;
  /** Each leg's RTCP-based quality (see quality.ts); a leg whose party sent no receiver reports is absent. */
  quality: Record<string, LegQuality>;
}


/** Condenses rtpengine's `query` answer into the figures a CDR keeps. `labels` maps tags to leg names. */
export function summarizeMediaStats(res: NgResponse, labels: Record<string, string>): MediaStats {
  const legs: Record<string, LegStats> = {};
  for (const { tag, medias } of queryTags(res)) {
    const leg: LegStats = { packets: 0, bytes: 0, errors: 0, codec: null };
    for (const { media, streams } of medias) {
      if (!leg.codec && typeof media.codec === 'string') leg.codec = media.codec;
      for (const stream of streams) {
        const s = rec(stream.stats);
        leg.packets += num(s.packets);
        leg.bytes += num(s.bytes);
        leg.errors += num(s.errors);
      }
    }
    const name = labels[tag] ?? tag;
    const seen = legs[name];
    // One leg may have had several tags (a fresh PBX-leg tag after a hold): add them up.
    legs[name] = seen ? { packets: seen.packets + leg.packets, bytes: seen.bytes + leg.bytes, errors: seen.errors + leg.errors, codec: leg.codec ?? seen.codec } : leg;
  }
  const t = rec(res.totals);
  const pick = (o: unknown) => ({ packets: num(rec(o).packets), bytes: num(rec(o).bytes), errors: num(rec(o).errors) });
  const created = num(res.created);
  return {
    legs,
    totals: res.totals ? { rtp: pick(t.RTP), rtcp: pick(t.RTCP) } : null,
    durationSeconds: created ? Math.max(0, Math.round(Date.now() / 1000 - created)) : null,
    quality: legQuality(res, labels),
  };
}

/**
 * Ends a call's media on rtpengine and returns its statistics (rtpengine 10.5 answers `delete` with a
 * bare "ok", so they are read with `query` first). Never throws: failures are reported to `warn`.
 */
export async function releaseMedia(
  rtp: { query(at: NgAddress, p: Record<string, unknown>): Promise<NgResponse>; delete(at: NgAddress, p: Record<string, unknown>): Promise<NgResponse> },
  at: NgAddress,
  callId: string,
  labels: Record<string, string>,
  warn: (what: string, err: unknown) => void,
): Promise<MediaStats | null> {
  let stats: MediaStats | null = null;
  try {
    stats = summarizeMediaStats(await rtp.query(at, { 'call-id': callId }), labels);
  } catch (err) {
    warn('rtpengine query failed', err);
  }
  try {
    await rtp.delete(at, { 'call-id': callId });
  } catch (err) {
    warn('rtpengine delete failed', err);
  }
  return stats;
}

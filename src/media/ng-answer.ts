import { NgResponse } from 'rtpengine-client';

/** Reading rtpengine's untyped (bencoded) answers without trusting their shape. */

export const ngRecord = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});
export const ngNumber = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A `query` answer's monologues: each tag with its medias (as rtpengine lists them) and their streams. */
export function* queryTags(res: NgResponse): Generator<{ tag: string; medias: Array<{ media: Record<string, unknown>; streams: Array<Record<string, unknown>> }> }> {
  for (const [tag, raw] of Object.entries(ngRecord(res.tags))) {
    const medias = list(ngRecord(raw).medias).map((m) => ({ media: ngRecord(m), streams: list(ngRecord(m).streams).map(ngRecord) }));
    yield { tag, medias };
  }
}

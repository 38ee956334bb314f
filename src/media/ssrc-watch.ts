import { NgResponse } from 'rtpengine-client';
import { queryTags } from './ng-answer';

/**
 * Watches the SSRC the PBX leg sends on, as rtpengine's `query` reports it at each keepalive poll, for
 * a stream that comes BACK: A, then B, then A again. Asterisk does this with its own music on hold
 * (moh_passthrough=no) and when direct_media moves the media back to the phone: the phone's packets
 * are forwarded on the phone's own SSRC, the music on Asterisk's. rtpengine keeps the input SSRC on
 * its output, and the WhatsApp user's WebRTC stack (libwebrtc) ignores a stream whose SSRC it has
 * left: the user would hear nothing of the agent from then on. A first change (A, then B) is heard
 * fine and is not reported. The history belongs to one rtpengine tag: a fresh PBX-leg tag starts it again.
 */
export class SsrcWatch {
  private tag: string | null = null;
  private current: number | null = null;
  private readonly seen = new Set<number>();

  /**
   * One poll's reading: the PBX leg's current tag and the SSRC rtpengine last received on it (null
   * before any packet). Returns the previous SSRC when `ssrc` is one this tag had before and left.
   */
  observe(tag: string, ssrc: number | null): { returned: number; left: number } | null {
    if (tag !== this.tag) {
      this.tag = tag;
      this.current = null;
      this.seen.clear();
    }
    if (ssrc === null || ssrc === this.current) return null;
    const left = this.current;
    this.current = ssrc;
    const back = this.seen.has(ssrc);
    this.seen.add(ssrc);
    return back && left !== null ? { returned: ssrc, left } : null;
  }
}

/**
 * The SSRC rtpengine last received on `tag`'s first stream that has one (its RTP stream), from a
 * `query` answer: rtpengine 10.5 lists it as the stream's `SSRC` (its current incoming SSRC, which it
 * replaces when the sender changes SSRC). Null when the tag has received nothing yet.
 */
export function incomingSsrc(res: NgResponse, tag: string): number | null {
  for (const t of queryTags(res)) {
    if (t.tag !== tag) continue;
    for (const { streams } of t.medias) {
      for (const { SSRC } of streams) if (typeof SSRC === 'number' && SSRC !== 0) return SSRC;
    }
  }
  return null;
}

import { CallMedia } from './call-media';
import { SsrcWatch } from './ssrc-watch';

export type KeepaliveEvent = 'keepalive_started' | 'keepalive_stopped' | 'pbx_ssrc_returned';

export interface KeepaliveOptions {
  /** The file played to the WhatsApp user while the PBX sends nothing (music on hold, or silence). */
  file: string;
  /** How often the PBX leg's packet count is read. */
  pollMs: number;
  /** Polls in a row without a packet from the PBX before the file starts. */
  quietPolls: number;
}

/**
 * Keeps media flowing to the WhatsApp user while the PBX sends none (hold without music, a muted agent
 * with silence suppression): WhatsApp hangs up after 20 s without media at the start, 30 s mid-call.
 * Watches the PBX leg's packet count on rtpengine; when it stops moving, rtpengine plays `file` to
 * the WhatsApp user; as soon as the PBX sends again (its own music on hold, the agent back), it stops.
 * The same poll reports the PBX's stream returning on an SSRC it had left (`pbx_ssrc_returned`).
 */
export class MediaKeepalive {
  private timer: NodeJS.Timeout | null = null;
  private last = -1;
  private quiet = 0;
  /** The PBX holds the call (see pbxHeld). */
  private held = false;
  /** Until the PBX's first packet (see start). */
  private eager = false;
  private playing = false;
  private stopped = false;
  private busy: Promise<void> = Promise.resolve();
  /** The same poll also watches for the PBX's stream returning on an SSRC it had left (see SsrcWatch). */
  private readonly ssrcs = new SsrcWatch();

  constructor(
    private readonly media: CallMedia,
    private readonly opts: KeepaliveOptions,
    private readonly report: (event: KeepaliveEvent, detail: object) => void,
    private readonly warn: (what: string, err: unknown) => void,
  ) {}

  /**
   * `o.eager`: until the PBX's first packet, the file starts at the first poll that finds none (Meta's
   * SIP sends nothing until the business side has: a PBX that waits for media before sending would
   * otherwise leave both sides silent until the quiet wait ran out).
   */
  start(o: { eager?: boolean } = {}): void {
    if (this.timer || this.stopped) return;
    this.eager = o.eager === true;
    this.schedule();
  }

  /** Stops watching (and playing); bounded by rtpengine's command timeout. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.busy;
  }

  /**
   * The PBX put the user on hold: one quiet poll is enough to start the file (a held PBX that plays no
   * music has stopped sending on purpose), so the WhatsApp side's media has a gap of one poll at most,
   * not the whole wait meant for an agent who merely went quiet.
   */
  pbxHeld(): void {
    this.held = true;
  }

  /** The PBX says it is back (a resume re-INVITE): stop the file now rather than at the next poll. */
  pbxResumed(): void {
    this.held = false;
    this.busy = this.busy.then(async () => {
      if (!this.playing || this.stopped) return;
      try {
        await this.media.stopPlayingToWhatsApp();
        this.playing = false;
        this.quiet = 0;
        this.report('keepalive_stopped', { reason: 'pbx resumed' });
      } catch (err) {
        this.warn('keepalive: rtpengine stop failed', err);
      }
    });
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.busy = this.busy.then(() => this.poll()).finally(() => {
        if (!this.stopped) this.schedule();
      });
    }, this.opts.pollMs);
  }

  private async poll(): Promise<void> {
    let packets: number;
    try {
      const reading = await this.media.pbxLegReading();
      packets = reading.packets;
      const back = this.ssrcs.observe(reading.tag, reading.ssrc);
      if (back && !this.stopped) this.report('pbx_ssrc_returned', { ssrc: back.returned, after: back.left, tag: reading.tag });
    } catch (err) {
      this.warn('keepalive: rtpengine query failed', err);
      return;
    }
    // A re-negotiated PBX leg may start its counters again: any change means packets arrived.
    const moved = this.last >= 0 && packets !== this.last;
    const first = this.last < 0;
    this.last = packets;
    if (packets > 0) this.eager = false;
    if (first && !this.eager) return;
    this.quiet = moved ? 0 : this.quiet + 1;
    try {
      if (!this.playing && (this.eager || this.quiet >= (this.held ? 1 : this.opts.quietPolls)) && !this.stopped) {
        await this.media.playToWhatsApp(this.opts.file);
        this.playing = true;
        this.report('keepalive_started', { file: this.opts.file, quietMs: this.quiet * this.opts.pollMs });
      } else if (this.playing && moved) {
        await this.media.stopPlayingToWhatsApp();
        this.playing = false;
        this.report('keepalive_stopped', { reason: 'pbx media resumed' });
      }
    } catch (err) {
      this.warn('keepalive: rtpengine play/stop failed', err);
    }
  }
}

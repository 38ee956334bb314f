import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CallMediaKind, MediaRecords } from '../cdr/media-records';
import { describeDbError } from '../cdr/write-safety';
import { Logger } from '../log';

/**
 * A file WhatsApp made of a call, as a webhook announced it (the calls' CallMediaAvailable has this
 * shape; this layer sits below the calls and names only what it reads).
 */
export interface MediaNotice {
  wacid: string;
  phoneId: string | null;
  media: CallMediaKind;
  mediaId: string;
  /** A direct download URL when the webhook carried one (short-lived). */
  url: string | null;
  mimeType: string | null;
  /** As the provider gave it: hex or base64. */
  sha256: string | null;
}

/** How one file is downloaded: the provider account's fetchMedia for the number the notice is about. */
export interface MediaDownload {
  /** The provider account's name (kept on the row). */
  provider: string;
  fetch: (media: { mediaId: string; url: string | null }) => Promise<{ body: Buffer; mimeType: string }>;
}

export interface MediaFetcherOptions {
  records: Pick<MediaRecords, 'add' | 'stored' | 'failed' | 'linkByWacid' | 'expired' | 'markDeleted'>;
  /** RECORDING_DIR: files go under <dir>/media/. */
  dir: string;
  log: Logger;
  /** Attempts at most (each bounded by the adapter's own timeout). */
  attempts?: number;
  /** Wait before the second attempt; doubled after each failure. */
  firstBackoffMs?: number;
  /** No attempt starts later than this after the notice (the provider's URLs are short-lived). */
  windowMs?: number;
  /** The largest file kept (a bigger download is an error). */
  maxBytes?: number;
}

/** What came of one notice. */
export type MediaOutcome =
  | { result: 'stored'; id: number; path: string; bytes: number; attempts: number }
  | { result: 'already_stored'; id: number }
  | { result: 'failed'; id: number | null; error: string; attempts: number };

const DEFAULTS = { attempts: 4, firstBackoffMs: 500, windowMs: 60_000, maxBytes: 64 * 1024 * 1024 };

const EXTENSIONS: Record<string, string> = {
  'audio/ogg': '.ogg', 'audio/opus': '.opus', 'audio/mpeg': '.mp3', 'audio/mp4': '.m4a', 'audio/aac': '.aac', 'audio/amr': '.amr',
  'audio/wav': '.wav', 'audio/x-wav': '.wav', 'audio/webm': '.webm', 'text/plain': '.txt', 'application/json': '.json',
};

/** A failure that more attempts cannot mend (the file is not what WhatsApp said it is). */
class MediaRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MediaRefused';
  }
}

/**
 * Brings the files WhatsApp makes of a call (Meta: per-call recording and transcription, a voicemail
 * after a missed call) into the bridge's recording store while their download window is open: the
 * call_media row first (once per wacid, kind and media id: a redelivered notice of a file already on
 * disk is not fetched again), then bounded attempts within `windowMs`, the SHA-256 checked when the
 * provider gave one, the file written (0640) as <dir>/media/<yyyy-mm>/<row id>-<kind><ext> through a
 * temporary name, the row completed and linked to the CDR by wacid. A failure is kept in the row's
 * error and logged; handle() never throws.
 */
export class MediaFetcher {
  private readonly o: Required<MediaFetcherOptions>;

  constructor(o: MediaFetcherOptions) {
    this.o = { ...DEFAULTS, ...o };
  }

  /** `download`: how to fetch it (the notice's provider account, for its number); null: no provider knows that number. */
  async handle(n: MediaNotice, download: MediaDownload | null): Promise<MediaOutcome> {
    const log = this.o.log.child({ wacid: n.wacid, media: n.media, mediaId: n.mediaId });
    const started = Date.now();
    let id: number | null = null;
    let attempts = 0;
    try {
      const claimed = await this.o.records.add({
        wacid: n.wacid, provider: download?.provider ?? null, kind: n.media, mediaId: n.mediaId, mimeType: n.mimeType, sha256: n.sha256,
      });
      id = claimed.id;
      if (claimed.row.path && !claimed.row.deleted_at) return { result: 'already_stored', id };
      if (!download) throw new MediaRefused(`no provider account serves the number (phone id ${n.phoneId ?? 'none'})`);

      const { body, mimeType } = await this.fetchWithin(download, n, started, () => attempts++, log);
      const file = await this.write(id, n.media, mimeType ?? n.mimeType, body, new Date(started));
      await this.o.records.stored(id, { path: file, bytes: body.length, mimeType: mimeType ?? n.mimeType, attempts });
      await this.o.records.linkByWacid(n.wacid);
      log.info({ id, bytes: body.length, attempts, ms: Date.now() - started }, 'call media fetched');
      return { result: 'stored', id, path: file, bytes: body.length, attempts };
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      log.error({ id, attempts, err: describeDbError(err) }, 'call media not fetched');
      if (id !== null) {
        await this.o.records.failed(id, error, attempts).catch((e: unknown) => log.warn({ id, err: describeDbError(e) }, 'call media error not recorded'));
      }
      return { result: 'failed', id, error, attempts };
    }
  }

  /** The file, downloaded and checked: up to `attempts` tries, none started past the window. */
  private async fetchWithin(d: MediaDownload, n: MediaNotice, started: number, counted: () => void, log: Logger): Promise<{ body: Buffer; mimeType: string | null }> {
    let backoff = this.o.firstBackoffMs;
    for (let attempt = 1; ; attempt++) {
      counted();
      try {
        const got = await d.fetch({ mediaId: n.mediaId, url: n.url });
        this.check(got.body, n.sha256);
        return { body: got.body, mimeType: got.mimeType || null };
      } catch (err) {
        if (err instanceof MediaRefused) throw err;
        const left = started + this.o.windowMs - Date.now();
        if (attempt >= this.o.attempts || left <= backoff) throw err;
        log.warn({ attempt, err: (err as Error).message }, 'call media download failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff *= 2;
      }
    }
  }

  private check(body: Buffer, sha256: string | null): void {
    if (body.length > this.o.maxBytes) throw new MediaRefused(`the file is ${body.length} bytes, more than the ${this.o.maxBytes} kept`);
    if (body.length === 0) throw new MediaRefused('the file is empty');
    if (!sha256) return;
    const digest = crypto.createHash('sha256').update(body).digest();
    const given = sha256.trim();
    const matches = given.toLowerCase() === digest.toString('hex') || given.replace(/=+$/, '') === digest.toString('base64').replace(/=+$/, '')
      || given.replace(/=+$/, '') === digest.toString('base64url');
    if (!matches) throw new MediaRefused(`the file's SHA-256 (${digest.toString('hex')}) is not the one WhatsApp gave (${given.slice(0, 100)})`);
  }

  /** Writes the file through a temporary name (a crash leaves no half file under the final one). */
  private async write(id: number, kind: CallMediaKind, mimeType: string | null, body: Buffer, at: Date): Promise<string> {
    const dir = path.join(this.o.dir, 'media', at.toISOString().slice(0, 7));
    await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    const type = (mimeType ?? '').split(';')[0]!.trim().toLowerCase();
    const file = path.join(dir, `${id}-${kind}${EXTENSIONS[type] ?? '.bin'}`);
    const part = `${file}.${process.pid}.part`;
    try {
      await fs.writeFile(part, body, { mode: 0o640 });
      // The mode given to writeFile is masked by the umask; the file's mode is this one whatever the umask.
      await fs.chmod(part, 0o640);
      await fs.rename(part, file);
    } catch (err) {
      await fs.rm(part, { force: true }).catch(() => undefined);
      throw err;
    }
    return file;
  }

  /**
   * Deletes the files fetched more than `retentionDays` ago (RECORDING_RETENTION_DAYS, as recordings),
   * oldest first in batches, and marks their rows; resolves with how many. 0 days keeps them.
   */
  async sweep(retentionDays: number): Promise<number> {
    if (retentionDays <= 0) return 0;
    let deleted = 0;
    for (;;) {
      const rows = await this.o.records.expired(retentionDays, 500);
      for (const r of rows) await fs.rm(r.path, { force: true });
      await this.o.records.markDeleted(rows.map((r) => r.id));
      deleted += rows.length;
      if (rows.length < 500) break;
    }
    if (deleted) this.o.log.info({ deleted, retentionDays }, 'old call media files deleted');
    return deleted;
  }
}

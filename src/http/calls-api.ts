import fs from 'node:fs';
import path from 'node:path';
import Router from '@koa/router';
import { Context, Next } from 'koa';
import { LiveCall, LiveCalls } from '../calls/live';
import { Logger } from '../log';
import { ReportAdmission } from '../reports/admission';
import { CALL_COLUMNS, REPORTING_COLUMNS, withoutRecordingPath } from '../reports/columns';
import { ActiveExports, PagedCsvStream } from '../reports/export-stream';
import { CallFilter, checkParams, ListRequest, parseCallId, parseListQuery, parseSummaryQuery, ReportInputError } from '../reports/filters';
import { ReportStore } from '../reports/store';
import { bearerToken, roleOf, tokenDigest } from './auth';
import { RefusalLog } from '../refusal-log';

export interface CallsApiDeps {
  reports: ReportStore;
  /** The calls in progress (the dispatcher). */
  live: LiveCalls;
  /** CALL_QUALITY_MOS_THRESHOLD: what poor_quality=true means. */
  mosThreshold: number;
  /** RECORDING_DIR: recordings are served only from inside it. */
  recordingDir: string;
  /** Reporting requests at once, per token and in all (REPORTING_MAX_CONCURRENT*): beyond, 429. */
  admission: ReportAdmission;
  /** REPORTING_EXPORT_STALL_MS: a CSV export whose client has read nothing for this long is ended. */
  exportStallMs: number;
  /** The CSV exports in progress (what they buffer can be measured). */
  exports?: ActiveExports;
  log: Logger;
}

/** Retry-After (s) on the 429 that refuses a reporting request over the concurrency limits. */
export const REPORTING_RETRY_AFTER_S = 5;

/** A call in progress in the API's snake_case. */
export interface LiveCallJson {
  id: string;
  direction: string;
  wacid: string | null;
  state: string;
  customer_number: string | null;
  business_number: string | null;
  agent: string | null;
  sip_call_id: string | null;
  started_at: string;
  duration_seconds: number;
  talk_seconds: number | null;
}

const AUDIO_TYPES: Record<string, string> = {
  '.wav': 'audio/wav', '.mp3': 'audio/mpeg', '.ogg': 'audio/ogg', '.opus': 'audio/ogg', '.pcap': 'application/vnd.tcpdump.pcap',
};

/**
 * The CDR and reporting API under /api (the guard in auth.ts runs first and sets ctx.state.role):
 * calls with filters and keyset pages or as CSV, one call with its timeline and media files, its recording
 * and those files (recordings, transcriptions, voicemails WhatsApp made of it), the calls in
 * progress (and hanging one up, admin only), and summary reports. Every route that queries Postgres
 * takes a place in `admission` first (429 when none is free) and keeps it until its answer is ready
 * (a CSV export until its stream closes). A reporting token never sees recording_path.
 */
export function callsApiRoutes(d: CallsApiDeps): Router {
  const router = new Router({ prefix: '/api' });
  const refusals = new RefusalLog(d.log);
  const stalls = new RefusalLog(d.log);

  /** Admission for one request, keyed by its token's digest (the guard in auth.ts has checked the token). */
  const admit = async (ctx: Context, next: Next) => {
    const bearer = bearerToken(ctx) ?? '';
    const place = d.admission.admit(tokenDigest(bearer).toString('hex'));
    if (!place.ok) {
      refusals.warn({ ip: ctx.ip, path: ctx.path, role: roleOf(ctx), limit: place.limit, max: place.max }, 'reporting request refused: too many at once (429)');
      ctx.set('Retry-After', String(REPORTING_RETRY_AFTER_S));
      const which = place.limit === 'per_token' ? `this token has ${place.max} reporting requests in progress` : `${place.max} reporting requests are in progress`;
      return problem(ctx, 429, `${which}; retry after ${REPORTING_RETRY_AFTER_S} s`);
    }
    try {
      await next();
    } finally {
      // An export keeps its place until its stream closes (it queries as its client reads); a
      // recording file streams without Postgres, so its place is free once the call was looked up.
      const body: unknown = ctx.body;
      if (body instanceof PagedCsvStream && !body.closed) body.once('close', place.release);
      else place.release();
    }
  };
  router.use(async (ctx, next) => {
    if (!roleOf(ctx)) return problem(ctx, 401, 'missing bearer token');
    try {
      await next();
    } catch (err) {
      if (err instanceof ReportInputError) return problem(ctx, 400, err.message, err.field);
      if (!isDatabaseTimeout(err)) throw err;
      d.log.warn({ err, path: ctx.path }, 'reporting query: Postgres did not answer in time');
      ctx.set('Retry-After', '5');
      problem(ctx, 503, 'the database did not answer in time; retry, or narrow the range');
    }
  });

  router.get('/calls', admit, async (ctx) => {
    const req = parseListQuery(ctx.query, d.mosThreshold);
    if (wantsCsv(ctx, req)) return sendCsv(ctx, req, d, stalls);
    const page = await d.reports.listCalls(req.filter, req.page);
    ctx.body = roleOf(ctx) === 'admin' ? page : { ...page, calls: page.calls.map(withoutRecordingPath) };
  });

  // Before /calls/:id, which would take "live" for an id.
  router.get('/calls/live', (ctx) => {
    checkParams(ctx.query, []);
    ctx.body = { calls: d.live.list().map(liveJson) };
  });

  router.post('/calls/:id/hangup', async (ctx) => {
    if (roleOf(ctx) !== 'admin') return problem(ctx, 403, 'hanging up a call needs the admin token');
    checkParams(ctx.query, []);
    const id = parseCallId(ctx.params.id!);
    if (!(await d.live.hangup(id))) return problem(ctx, 404, 'no call in progress with this id');
    d.log.info({ callId: id, ip: ctx.ip }, 'call hung up through the API');
    ctx.body = { ended: true };
  });

  router.get('/calls/:id', admit, async (ctx) => {
    checkParams(ctx.query, []);
    const detail = await d.reports.getCall(parseCallId(ctx.params.id!));
    if (!detail) return problem(ctx, 404, 'no call with this id');
    ctx.body = roleOf(ctx) === 'admin' ? detail : { ...detail, call: withoutRecordingPath(detail.call) };
  });

  router.get('/calls/:id/recording', admit, async (ctx) => {
    checkParams(ctx.query, []);
    const id = parseCallId(ctx.params.id!);
    const detail = await d.reports.getCall(id);
    if (!detail) return problem(ctx, 404, 'no call with this id');
    const file = await storedFile(detail.call.recording_path, detail.call.recording_deleted_at, d.recordingDir, 'the recording');
    if (typeof file === 'string') return problem(ctx, 404, file);
    ctx.type = AUDIO_TYPES[path.extname(file.path).toLowerCase()] ?? 'application/octet-stream';
    ctx.length = file.size;
    ctx.set('Content-Disposition', `inline; filename="${id}${path.extname(file.path)}"`);
    ctx.body = fs.createReadStream(file.path);
  });

  router.get('/calls/:id/media/:mediaId', admit, async (ctx) => {
    checkParams(ctx.query, []);
    const id = parseCallId(ctx.params.id!);
    const mediaId = parseMediaId(ctx.params.mediaId!);
    const media = await d.reports.getMediaFile(id, mediaId);
    if (!media) return problem(ctx, 404, 'no such file of this call');
    const file = await storedFile(media.path, media.deleted_at, d.recordingDir, `the ${media.kind}`);
    if (typeof file === 'string') return problem(ctx, 404, file);
    ctx.type = servedType(media.mime_type);
    ctx.length = file.size;
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Content-Disposition', `inline; filename="${id}-${media.kind}-${media.id}${path.extname(file.path)}"`);
    ctx.body = fs.createReadStream(file.path);
  });

  router.get('/reports/summary', admit, async (ctx) => {
    ctx.body = await d.reports.summary(parseSummaryQuery(ctx.query));
  });

  return router;
}

function liveJson(c: LiveCall): LiveCallJson {
  return {
    id: c.id, direction: c.direction, wacid: c.wacid, state: c.state, customer_number: c.customerNumber,
    business_number: c.businessNumber, agent: c.agent, sip_call_id: c.sipCallId, started_at: c.startedAt,
    duration_seconds: c.durationSeconds, talk_seconds: c.talkSeconds,
  };
}

/** format=csv, or (without format) an Accept header that prefers text/csv. */
function wantsCsv(ctx: Context, req: ListRequest): boolean {
  if (req.format) return req.format === 'csv';
  return ctx.accepts('application/json', 'text/csv') === 'text/csv';
}

function sendCsv(ctx: Context, req: ListRequest, d: CallsApiDeps, stalls: RefusalLog): void {
  if (ctx.query.limit !== undefined || ctx.query.cursor !== undefined) {
    throw new ReportInputError(ctx.query.limit !== undefined ? 'limit' : 'cursor', 'a CSV export has every matching call: limit and cursor are for JSON pages');
  }
  const started = Date.now();
  let rows = 0;
  const stream = d.reports.exportCsv(req.filter, {
    columns: roleOf(ctx) === 'admin' ? CALL_COLUMNS : REPORTING_COLUMNS,
    onBatch: (n) => {
      rows += n;
    },
    onError: (err) => d.log.error({ err: err.message, rows }, 'CSV export cut short by a database error'),
    stallMs: d.exportStallMs,
    onStall: (buffered) => {
      stalls.warn({ ip: ctx.ip, rows, buffered, stallMs: d.exportStallMs }, 'CSV export ended: its client read nothing for REPORTING_EXPORT_STALL_MS');
      // The response cannot end cleanly with bytes unsent: close the connection.
      ctx.req.socket.destroy();
    },
  });
  stream.once('close', () => d.log.info({ rows, ms: Date.now() - started, complete: stream.readableEnded, stalled: stream.stalled }, 'CSV export finished'));
  // The last bytes sit in the response's buffer once the stream has ended: a client that reads none of
  // them within the same bound loses its connection too.
  stream.once('end', () => {
    const res = ctx.res;
    const timer = setTimeout(() => {
      if (res.writableFinished) return;
      stalls.warn({ ip: ctx.ip, rows, buffered: res.writableLength }, 'CSV export ended: its client did not read the last bytes within REPORTING_EXPORT_STALL_MS');
      ctx.req.socket.destroy();
    }, d.exportStallMs);
    timer.unref();
    res.once('close', () => clearTimeout(timer));
  });
  d.exports?.add({ stream, response: ctx.res });
  ctx.type = 'text/csv; charset=utf-8';
  ctx.set('Content-Disposition', `attachment; filename="${csvName(req.filter)}"`);
  ctx.body = stream;
}

/** calls_<from>_<to>.csv with compact UTC stamps (or "start"/"now"). */
function csvName(f: CallFilter): string {
  const stamp = (iso: string | null, none: string) => (iso ? iso.slice(0, 19).replace(/[-:]/g, '') + 'Z' : none);
  return `calls_${stamp(f.from, 'start')}_${stamp(f.to, 'now')}.csv`;
}

/**
 * A stored file of a call (its recording, or a file WhatsApp made of it), or why there is none. Only
 * files inside RECORDING_DIR are served, so a path in the database can never expose another file.
 */
async function storedFile(filePath: string | null, deletedAt: Date | null, dir: string, what: string): Promise<{ path: string; size: number } | string> {
  if (!filePath) return what === 'the recording' ? 'this call has no recording' : `${what} was not fetched`;
  if (deletedAt) return `${what} was deleted at ${deletedAt.toISOString()} (retention)`;
  try {
    const [real, root] = await Promise.all([fs.promises.realpath(filePath), fs.promises.realpath(dir)]);
    if (!real.startsWith(root + path.sep)) return `${what} is not in RECORDING_DIR`;
    const st = await fs.promises.stat(real);
    return st.isFile() ? { path: real, size: st.size } : `${what} file is gone`;
  } catch {
    return `${what} file is gone`;
  }
}

/** A file's id in the media list of a call (GET /api/calls/{id}). */
function parseMediaId(v: string): number {
  if (!/^[1-9]\d{0,14}$/.test(v)) throw new ReportInputError('mediaId', `mediaId must be the id of one of the call's media files (a positive integer), got "${v.slice(0, 40)}"`);
  return Number(v);
}

/**
 * The Content-Type a stored file is served with: its type as the provider gave it when that is audio,
 * plain text or JSON (a transcription); anything else (HTML, say) as a download of bytes.
 */
function servedType(mime: string | null): string {
  const base = (mime ?? '').split(';')[0]!.trim().toLowerCase();
  return /^audio\/[a-z0-9.+-]{1,60}$/.test(base) || base === 'text/plain' || base === 'application/json' ? base : 'application/octet-stream';
}

/** Postgres did not answer in time (a statement or a pool wait): a 503, not a 500. */
function isDatabaseTimeout(err: unknown): boolean {
  const e = err as Error;
  return e.name === 'SequelizeConnectionAcquireTimeoutError' || /timeout|timed out/i.test(e.message ?? '');
}

function problem(ctx: Context, status: number, error: string, field?: string): void {
  ctx.status = status;
  ctx.body = field ? { error, field } : { error };
}

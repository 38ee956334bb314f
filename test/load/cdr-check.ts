import { QueryTypes } from 'sequelize';
import { connectDatabase } from '../../src/cdr/db';
import { CallResult } from './drivers';

export interface CdrRow {
  wacid: string | null;
  direction: string;
  outcome: string | null;
  ended_at: Date | null;
  offered_at: Date;
  pbx_answered_at: Date | null;
  accepted_at: Date | null;
  wa_codec: string | null;
  pbx_codec: string | null;
  media_stats: { legs?: Record<string, { packets?: number }> } | null;
}

export interface CdrCheck {
  ok: boolean;
  rows: number;
  /** Problems found, by kind (each with how many calls). */
  problems: Map<string, number>;
  byWacid: Map<string, CdrRow>;
  codecs: Map<string, number>;
}

/**
 * Every call must leave exactly one complete CDR: one row per wacid, ended, outcome answered, and (for
 * holds long enough to be sure of it) media statistics from both legs. Waits (bounded) for the last
 * calls' rows to be closed first.
 */
export async function checkCdrs(databaseUrl: string, results: CallResult[], o: { mediaOnBothLegs: boolean; waitMs?: number }): Promise<CdrCheck> {
  const waitMs = o.waitMs ?? 30000;
  const db = connectDatabase(databaseUrl);
  try {
    const deadline = Date.now() + waitMs;
    let rows: CdrRow[] = [];
    for (;;) {
      rows = await db.query<CdrRow>(
        `SELECT wacid, direction, outcome, ended_at, offered_at, pbx_answered_at, accepted_at, wa_codec, pbx_codec, media_stats FROM calls`,
        { type: QueryTypes.SELECT },
      );
      if (rows.every((r) => r.ended_at !== null) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const problems = new Map<string, number>();
    const add = (k: string) => problems.set(k, (problems.get(k) ?? 0) + 1);
    const byWacid = new Map<string, CdrRow>();
    const codecs = new Map<string, number>();
    for (const r of rows) {
      if (!r.wacid) add('CDR without a wacid');
      else if (byWacid.has(r.wacid)) add('duplicate wacid');
      else byWacid.set(r.wacid, r);
      if (!r.ended_at) add('CDR not ended');
      if (r.outcome !== 'answered') add(`CDR outcome ${r.outcome ?? 'none'}`);
      const legs = r.media_stats?.legs ?? {};
      if (o.mediaOnBothLegs && !((legs.whatsapp?.packets ?? 0) > 0 && (legs.pbx?.packets ?? 0) > 0)) add('CDR media stats without packets on both legs');
      const c = `${r.wa_codec ?? '?'} <-> ${r.pbx_codec ?? '?'}`;
      codecs.set(c, (codecs.get(c) ?? 0) + 1);
    }
    const expected = results.filter((r) => r.wacid && (r.direction === 'outbound' ? r.startedAt !== undefined : true));
    for (const r of expected) if (!byWacid.has(r.wacid!)) add('call without a CDR');
    const ok = problems.size === 0 && rows.length === results.length;
    if (rows.length !== results.length) problems.set(`${rows.length} CDR rows for ${results.length} calls`, 1);
    return { ok, rows: rows.length, problems, byWacid, codecs };
  } finally {
    await db.close();
  }
}

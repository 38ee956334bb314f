import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parser as promqlParser } from '@prometheus-io/lezer-promql';
import type { SyntaxNode } from '@lezer/common';
import { QueryTypes, Sequelize } from 'sequelize';
import YAML from 'yaml';
import { talkSeconds } from '../src/calls/cdr-fields';
import { connectDatabase } from '../src/cdr/db';
import { Outcome } from '../src/cdr/models';
import { infra } from './harness/infra';
import { startStack, TestStack } from './harness/bridge';

/**
 * The monitoring profile: Prometheus and Grafana (docker-compose.yml, docker/prometheus/,
 * docker/grafana/). Grafana and Prometheus cannot run here (no container registry), so what they would
 * do with these files is checked the way they would do it:
 *
 *  - the dashboards and provisioning files parse, and name the data sources that are provisioned;
 *  - every SQL query of the CDR dashboard (panels and template variables) is expanded the way Grafana's
 *    Postgres data source expands it (template variables as the frontend formats them for SQL, then the
 *    backend's $__interval and macros: pkg/tsdb/grafana-postgresql-datasource/macros.go and
 *    sqleng/sql_engine.go) and run against a real, migrated Postgres as the read-only role
 *    docker/grafana/readonly-role.sql creates, over rows the bridge's own CDR writer wrote for a known
 *    set of calls; each panel's numbers must equal what those calls imply, for several settings of the
 *    dashboard's variables;
 *  - every PromQL expression (live dashboard, alert rules) parses with Prometheus' own grammar
 *    (@prometheus-io/lezer-promql), and every metric it reads, and every label it groups by, is in a
 *    started bridge's GET /metrics;
 *  - the compose services mount the files that exist, and Prometheus' start command writes the files
 *    prometheus.yml reads.
 */

const ROOT = findRoot();
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const yamlOf = (rel: string) => {
  const doc = YAML.parseDocument(read(rel), { uniqueKeys: true });
  assert.deepEqual(doc.errors.map((e) => e.message), [], `${rel} is valid YAML`);
  return doc.toJS() as Record<string, any>;
};

interface Target { refId: string; datasource?: { type: string; uid: string }; expr?: string; rawSql?: string; format?: string; rawQuery?: boolean }
interface Panel { id: number; type: string; title: string; datasource?: { type: string; uid: string }; gridPos: { x: number; y: number; w: number; h: number }; targets?: Target[]; panels?: Panel[] }
interface Variable {
  name: string; type: string; query: string | { query: string }; multi?: boolean; includeAll?: boolean; allValue?: string | null;
  datasource?: { type: string; uid: string }; current?: { value: string | string[] }; options?: Array<{ value: string }>;
}
interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Variable[] } }

const LIVE = 'docker/grafana/dashboards/live.json';
const CDR = 'docker/grafana/dashboards/cdr-reports.json';
const live = JSON.parse(read(LIVE)) as Dashboard;
const cdr = JSON.parse(read(CDR)) as Dashboard;
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = (d: Dashboard): Panel[] => allPanels(d).filter((p) => p.type !== 'row');

const datasources = yamlOf('docker/grafana/provisioning/datasources/wa-sip-bridge.yml').datasources as Array<{ uid: string; type: string; name: string; url: string; jsonData?: Record<string, unknown>; user?: string; secureJsonData?: Record<string, string> }>;
const providers = yamlOf('docker/grafana/provisioning/dashboards/wa-sip-bridge.yml').providers as Array<{ type: string; options: { path: string } }>;
const compose = yamlOf('docker-compose.yml');
const services = compose.services as Record<string, Record<string, any>>;

// ---------------------------------------------------------------------------------------------------
// The calls: written through the bridge's CDR writer (CdrStore.createCall/updateCall), in the order and
// with the fields a real call writes them.

const B1 = '+14155550100';
const B2 = '+14155550199';
const FROM = new Date('2020-06-01T08:00:00Z');
const TO = new Date('2020-06-01T12:00:00Z');
const at = (hhmm: string, day = '2020-06-01') => new Date(`${day}T${hhmm}:00Z`);

interface CallSpec {
  key: string;
  direction: 'inbound' | 'outbound';
  business: string | null;
  customer: string;
  offeredAt: Date;
  /** null: still in progress. */
  outcome: Outcome | null;
  agent?: string;
  /** Answered calls: offered -> accepted, and accepted -> ended. */
  waitS?: number;
  talkS?: number;
  /** Unanswered calls: offered -> ended. */
  ringS?: number;
  sipCode?: number;
  quality?: { mos: string; loss: string; jitter: string; rtt: string };
  id?: string;
}

const q = (mos: string, loss = '0.40', jitter = '3.00', rtt = '40.00') => ({ mos, loss, jitter, rtt });
const CALLS: CallSpec[] = [
  { key: 'A', direction: 'inbound', business: B1, customer: '+6281100000001', offeredAt: at('08:05'), outcome: 'answered', agent: '201', waitS: 4, talkS: 60, quality: q('4.30') },
  { key: 'B', direction: 'inbound', business: B1, customer: '+6281100000002', offeredAt: at('08:20'), outcome: 'answered', agent: '201', waitS: 10, talkS: 120, quality: q('3.10', '4.50', '28.00', '180.00') },
  { key: 'C', direction: 'inbound', business: B2, customer: '+6281100000003', offeredAt: at('08:40'), outcome: 'answered', agent: '202', waitS: 6.5, talkS: 30.25, quality: q('4.00') },
  { key: 'D', direction: 'inbound', business: B1, customer: '+6281100000004', offeredAt: at('08:50'), outcome: 'no_answer', ringS: 25, sipCode: 487 },
  { key: 'E', direction: 'inbound', business: B1, customer: '+6281100000005', offeredAt: at('09:10'), outcome: 'caller_hangup', ringS: 8, sipCode: 487 },
  { key: 'F', direction: 'inbound', business: B2, customer: '+6281100000006', offeredAt: at('09:15'), outcome: 'busy', ringS: 1, sipCode: 486 },
  { key: 'G', direction: 'outbound', business: B1, customer: '+6281100000007', offeredAt: at('09:30'), outcome: 'answered', agent: '201', waitS: 12, talkS: 45, quality: q('2.90', '7.00', '40.00', '250.00') },
  { key: 'H', direction: 'outbound', business: B1, customer: '+6281100000008', offeredAt: at('09:45'), outcome: 'rejected', agent: '202', ringS: 5, sipCode: 603 },
  { key: 'I', direction: 'inbound', business: B1, customer: '+6281100000009', offeredAt: at('10:05'), outcome: 'answered', agent: '202', waitS: 2, talkS: 300 },
  { key: 'J', direction: 'inbound', business: B2, customer: '+6281100000010', offeredAt: at('10:30'), outcome: 'failed', ringS: 0.5, sipCode: 503 },
  { key: 'K', direction: 'inbound', business: B1, customer: '+6281100000011', offeredAt: at('10:50'), outcome: null },
  { key: 'L', direction: 'inbound', business: null, customer: '+6281100000012', offeredAt: at('11:00'), outcome: 'unreachable', ringS: 4, sipCode: 408 },
  { key: 'M', direction: 'outbound', business: B1, customer: '+6281100000013', offeredAt: at('11:30'), outcome: 'answered', agent: '203', waitS: 7, talkS: 15, quality: q('3.40') },
  // Outside the range: the day before, and after it.
  { key: 'X', direction: 'inbound', business: B1, customer: '+6281100000098', offeredAt: at('23:00', '2020-05-31'), outcome: 'answered', agent: '201', waitS: 3, talkS: 10, quality: q('1.50') },
  { key: 'Y', direction: 'inbound', business: B2, customer: '+6281100000099', offeredAt: at('12:30'), outcome: 'no_answer', ringS: 25, sipCode: 487 },
];

async function writeCall(stack: TestStack, c: CallSpec): Promise<void> {
  const cdr = stack.bridge.cdr;
  c.id = crypto.randomUUID();
  const t = (s: number) => new Date(c.offeredAt.getTime() + s * 1000);
  await cdr.createCall(c.id, {
    direction: c.direction, state: 'offered', offered_at: c.offeredAt, wacid: c.direction === 'inbound' ? `wacid.dash.${c.id}` : null,
    business_number: c.business, customer_number: c.customer, phone_id: 'phone-1', node_id: 'test-node',
    ...(c.direction === 'outbound' ? { agent: c.agent ?? null, sip_call_id: `${c.key}@pbx` } : {}),
  });
  if (c.direction === 'inbound') await cdr.updateCall(c.id, { state: 'pre_accepted', pre_accepted_at: t(0.2) });
  else await cdr.updateCall(c.id, { state: 'connecting', wacid: `wacid.dash.${c.id}` });
  if (c.outcome === null) {
    await cdr.updateCall(c.id, { state: 'ringing', pbx_ringing_at: t(0.5) });
    return;
  }
  if (c.outcome === 'answered') {
    const accepted = t(c.waitS!);
    const ended = t(c.waitS! + c.talkS!);
    await cdr.updateCall(c.id, { state: 'ringing', pbx_ringing_at: t(0.5) });
    await cdr.updateCall(c.id, {
      state: 'accepted', accepted_at: accepted, pbx_answered_at: accepted,
      ...(c.direction === 'inbound' ? { agent: c.agent ?? null, sip_call_id: `${c.key}@bridge`, pbx_target: 'sip:10.0.0.10:5060' } : {}),
    });
    await cdr.updateCall(c.id, {
      state: 'ended', outcome: 'answered', hangup_by: 'pbx', ended_at: ended, talk_seconds: talkSeconds(accepted, ended),
      sip_final_code: 200, sip_final_reason: 'OK', wa_codec: 'opus', pbx_codec: 'PCMU',
      ...(c.quality ? { mos: c.quality.mos, packet_loss_pct: c.quality.loss, jitter_ms: c.quality.jitter, rtt_ms: c.quality.rtt } : {}),
    });
    return;
  }
  const ended = t(c.ringS!);
  await cdr.updateCall(c.id, {
    state: 'ended', outcome: c.outcome, hangup_by: c.outcome === 'caller_hangup' ? 'whatsapp' : 'bridge', ended_at: ended,
    talk_seconds: talkSeconds(null, ended), sip_final_code: c.sipCode ?? null, pbx_target: c.direction === 'inbound' ? 'sip:10.0.0.10:5060' : null,
  });
}

// ---------------------------------------------------------------------------------------------------
// What the calls imply. The definitions are the ones the panels (and GET /api/reports/summary) state:
// answered = outcome answered; missed = inbound and ended with another outcome; abandoned = inbound
// caller_hangup; wait = accepted_at - offered_at of answered calls; talk = talk_seconds of answered calls.

interface Scenario { name: string; direction: string[] | null; business: string[] | null; bucket: '1h' | '1d'; mos: string; from?: Date; to?: Date }
type Row = Record<string, unknown>;
type Expectation = (rows: Row[], calls: CallSpec[], s: Scenario, title: string) => void;

/** Grafana's $__timeFilter is BETWEEN: both ends included. */
const inRange = (s?: Scenario) => CALLS.filter((c) => c.offeredAt >= (s?.from ?? FROM) && c.offeredAt <= (s?.to ?? TO));
const selected = (s: Scenario) => inRange(s).filter((c) => (!s.direction || s.direction.includes(c.direction)) && (!s.business || s.business.includes(c.business ?? '(none)')));
const answered = (cs: CallSpec[]) => cs.filter((c) => c.outcome === 'answered');
const missed = (cs: CallSpec[]) => cs.filter((c) => c.direction === 'inbound' && c.outcome !== null && c.outcome !== 'answered');
const abandoned = (cs: CallSpec[]) => cs.filter((c) => c.direction === 'inbound' && c.outcome === 'caller_hangup');
const waits = (cs: CallSpec[]) => answered(cs).map((c) => c.waitS!);
const talks = (cs: CallSpec[]) => answered(cs).map((c) => Number(talkSeconds(new Date(0), new Date(c.talkS! * 1000))));
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
const avg = (v: number[]) => (v.length ? sum(v) / v.length : null);
/** Postgres' percentile_cont: linear interpolation between the two nearest ranks. */
function percentileCont(v: number[], p: number): number | null {
  if (!v.length) return null;
  const s = [...v].sort((a, b) => a - b);
  const pos = p * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (pos - lo) * (s[hi]! - s[lo]!);
}
const bucketOf = (c: CallSpec, s: Scenario) => {
  const secs = s.bucket === '1h' ? 3600 : 86400;
  return Math.floor(c.offeredAt.getTime() / 1000 / secs) * secs;
};
function groupBy<K>(cs: CallSpec[], key: (c: CallSpec) => K): Map<K, CallSpec[]> {
  const m = new Map<K, CallSpec[]>();
  for (const c of cs) m.set(key(c), [...(m.get(key(c)) ?? []), c]);
  return m;
}
const mosOf = (c: CallSpec) => (c.quality ? Number(c.quality.mos) : null);

/** Compares a result with the expected rows, numbers to 1e-6. */
function same(actual: Row[], expected: Row[], what: string): void {
  const norm = (rows: Row[]) => rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? Math.round(v * 1e6) / 1e6 : v])));
  assert.deepEqual(norm(actual), norm(expected), what);
}

const EXPECTED: Record<string, Expectation> = {
  Totals: (rows, cs, s, title) => same(rows, [{
    offered: cs.length,
    answered: answered(cs).length,
    missed: missed(cs).length,
    'answer rate': cs.length ? answered(cs).length / cs.length : null,
    abandoned: abandoned(cs).length,
    'avg wait': avg(waits(cs)),
    'p90 wait': percentileCont(waits(cs), 0.9),
    'talk time': sum(talks(cs)),
    'avg talk': avg(talks(cs)),
  }], `${title} (${s.name})`),

  'Calls offered, answered, missed, abandoned': (rows, cs, s, title) => same(rows, [...groupBy(cs, (c) => bucketOf(c, s))].sort(([a], [b]) => a - b).map(([time, g]) => ({
    time, offered: g.length, answered: answered(g).length, missed: missed(g).length, abandoned: abandoned(g).length,
  })), `${title} (${s.name})`),

  'Answer rate': (rows, cs, s, title) => same(rows, [...groupBy(cs, (c) => bucketOf(c, s))].sort(([a], [b]) => a - b).map(([time, g]) => ({
    time, 'answer rate': answered(g).length / g.length,
  })), `${title} (${s.name})`),

  'Wait before answer (avg, p90)': (rows, cs, s, title) => same(rows, [...groupBy(answered(cs), (c) => bucketOf(c, s))].sort(([a], [b]) => a - b).map(([time, g]) => ({
    time, 'avg wait': avg(waits(g)), 'p90 wait': percentileCont(waits(g), 0.9),
  })), `${title} (${s.name})`),

  'Talk time (total and average)': (rows, cs, s, title) => same(rows, [...groupBy(answered(cs), (c) => bucketOf(c, s))].sort(([a], [b]) => a - b).map(([time, g]) => ({
    time, 'talk total': sum(talks(g)), 'talk average': avg(talks(g)),
  })), `${title} (${s.name})`),

  'Call quality (MOS)': (rows, cs, s, title) => same(rows, [...groupBy(cs.filter((c) => c.quality), (c) => bucketOf(c, s))].sort(([a], [b]) => a - b).map(([time, g]) => ({
    time,
    'average MOS': avg(g.map((c) => mosOf(c)!)),
    'worst MOS': Math.min(...g.map((c) => mosOf(c)!)),
    'calls below threshold': g.filter((c) => mosOf(c)! < Number(s.mos)).length,
  })), `${title} (${s.name})`),

  'By agent': (rows, cs, s, title) => same(rows, [...groupBy(cs.filter((c) => c.agent), (c) => c.agent!)].map(([agent, g]) => ({
    agent,
    calls: g.length,
    answered: answered(g).length,
    'inbound answered': answered(g).filter((c) => c.direction === 'inbound').length,
    'outbound placed': g.filter((c) => c.direction === 'outbound').length,
    'talk total': sum(talks(g)),
    'talk avg': avg(talks(g)),
    'wait avg': avg(waits(g)),
    'wait p90': percentileCont(waits(g), 0.9),
    'MOS avg': avg(g.filter((c) => c.quality).map((c) => mosOf(c)!)),
  })).sort((a, b) => b.answered - a.answered || (a.agent < b.agent ? -1 : 1)), `${title} (${s.name})`),

  Outcomes: (rows, cs, s, title) => same(rows, [...groupBy(cs, (c) => c.outcome ?? 'in progress')].map(([outcome, g]) => ({
    outcome, inbound: g.filter((c) => c.direction === 'inbound').length, outbound: g.filter((c) => c.direction === 'outbound').length, n: g.length,
  })).sort((a, b) => b.n - a.n || (a.outcome < b.outcome ? -1 : 1)).map(({ n: _n, ...r }) => r), `${title} (${s.name})`),

  'By business number': (rows, cs, s, title) => same(rows, [...groupBy(cs, (c) => c.business ?? '(none)')].map(([business, g]) => ({
    'business number': business,
    offered: g.length,
    answered: answered(g).length,
    missed: missed(g).length,
    'answer rate': answered(g).length / g.length,
    abandoned: abandoned(g).length,
    'wait avg': avg(waits(g)),
    'wait p90': percentileCont(waits(g), 0.9),
    'talk total': sum(talks(g)),
  })).sort((a, b) => b.offered - a.offered || (a['business number'] < b['business number'] ? -1 : 1)), `${title} (${s.name})`),

  'Missed calls (newest first)': (rows, cs, s, title) => same(rows, missed(cs).sort((a, b) => b.offeredAt.getTime() - a.offeredAt.getTime()).map((c) => ({
    offered: c.offeredAt.toISOString(), customer: c.customer, 'business number': c.business, outcome: c.outcome, rang: c.ringS,
    'SIP status': c.sipCode, 'PBX target': 'sip:10.0.0.10:5060', 'call id': c.id,
  })), `${title} (${s.name})`),

  'Poor-quality calls (MOS below $mos_threshold)': (rows, cs, s, title) => same(rows, cs.filter((c) => c.quality && mosOf(c)! < Number(s.mos))
    .sort((a, b) => mosOf(a)! - mosOf(b)! || b.offeredAt.getTime() - a.offeredAt.getTime()).map((c) => ({
      offered: c.offeredAt.toISOString(), direction: c.direction, customer: c.customer, agent: c.agent ?? null, MOS: mosOf(c),
      'loss %': Number(c.quality!.loss), 'jitter ms': Number(c.quality!.jitter), 'RTT ms': Number(c.quality!.rtt), talk: c.talkS, 'call id': c.id,
    })), `${title} (${s.name})`),
};

describe('dashboard test expectations (self-check)', () => {
  it('the known calls give the hand-computed totals', () => {
    const cs = inRange();
    assert.equal(cs.length, 13);
    assert.deepEqual([answered(cs).length, missed(cs).length, abandoned(cs).length], [6, 5, 1]);
    assert.equal(avg(waits(cs)), (4 + 10 + 6.5 + 12 + 2 + 7) / 6);
    // Waits sorted: 2, 4, 6.5, 7, 10, 12; rank 0.9 * 5 = 4.5: halfway between 10 and 12.
    assert.equal(percentileCont(waits(cs), 0.9), 11);
    assert.equal(sum(talks(cs)), 60 + 120 + 30.25 + 45 + 300 + 15);
  });
});

describe('monitoring profile (Prometheus, Grafana)', () => {
  describe('files', () => {
    it('provisions a Prometheus and a Postgres data source with fixed uids, the Postgres one through the read-only role', () => {
      const byUid = new Map(datasources.map((d) => [d.uid, d]));
      assert.equal(byUid.get('wasb-prometheus')?.type, 'prometheus');
      const pg = byUid.get('wasb-postgres');
      assert.equal(pg?.type, 'grafana-postgresql-datasource');
      assert.equal(pg?.user, 'grafana_reader');
      assert.equal(pg?.jsonData?.database, 'bridge', 'the database docker-compose.yml creates');
      assert.match(String(pg?.secureJsonData?.password), /^\$\{?GRAFANA_DB_PASSWORD\}?$/);
      assert.match(read('docker/grafana/readonly-role.sql'), /CREATE ROLE grafana_reader LOGIN/);
      assert.equal(providers.length, 1);
      assert.equal(providers[0]!.type, 'file');
    });

    for (const [file, d, ds] of [[LIVE, live, 'wasb-prometheus'], [CDR, cdr, 'wasb-postgres']] as const) {
      it(`${path.basename(file)}: unique uid and panel ids, panels on the grid, every query on the provisioned ${ds} source`, () => {
        assert.ok(d.uid && d.title, 'uid and title');
        const ids = allPanels(d).map((p) => p.id);
        assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
        const source = datasources.find((x) => x.uid === ds)!;
        for (const p of allPanels(d)) {
          assert.ok(p.gridPos.x >= 0 && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: within the 24-column grid`);
          if (p.type === 'row') continue;
          assert.ok(p.targets?.length, `${p.title}: has a query`);
          for (const t of p.targets ?? []) {
            const used = t.datasource ?? p.datasource;
            assert.deepEqual(used, { type: source.type, uid: source.uid }, `${p.title} ${t.refId}: data source`);
            if (ds === 'wasb-postgres') {
              assert.ok(t.rawQuery && t.rawSql, `${p.title}: a raw SQL query`);
              // sqleng panics on any other format.
              assert.ok(t.format === 'table' || t.format === 'time_series', `${p.title}: format ${t.format}`);
            } else {
              assert.ok(t.expr, `${p.title}: a PromQL expression`);
            }
          }
        }
        const titles = queryPanels(d).map((p) => p.title);
        assert.equal(new Set(titles).size, titles.length, 'panel titles are unique');
      });
    }

    it('the live dashboard covers what the issue asks for', () => {
      const exprs = queryPanels(live).flatMap((p) => p.targets!.map((t) => t.expr!)).join('\n');
      for (const m of ['wasb_calls_in_progress', 'wasb_calls_total', 'wasb_call_setup_seconds_bucket', 'wasb_ycloud_requests_total', 'wasb_ycloud_request_seconds_bucket',
        'wasb_rtpengine_commands_total', 'wasb_rtpengine_command_seconds_bucket', 'wasb_sip_requests_total', 'wasb_sip_request_seconds_bucket', 'wasb_sip_invites_received_total',
        'wasb_drachtio_connected', 'wasb_drachtio_disconnects_total', 'wasb_webhook_events_total', 'wasb_permission_requests_total', 'wasb_permission_replies_total',
        'wasb_call_mos_bucket', 'process_cpu_seconds_total', 'process_resident_memory_bytes']) {
        assert.ok(exprs.includes(m), `a panel reads ${m}`);
      }
      for (const q of ['0.5', '0.95', '0.99']) assert.ok(exprs.includes(`histogram_quantile(${q}, sum by (le, step) (rate(wasb_call_setup_seconds_bucket`), `setup p${q}`);
    });

    it('compose: prometheus and grafana only in the "monitoring" profile, mounting files that exist', () => {
      for (const name of ['prometheus', 'grafana']) {
        const svc = services[name]!;
        assert.deepEqual(svc.profiles, ['monitoring'], `${name} is optional`);
        assert.equal(svc.restart, 'unless-stopped');
        assert.equal(svc.network_mode, 'host', `${name} reaches the bridge and Postgres on loopback, like the rest of the stack`);
        for (const v of svc.volumes as string[]) {
          const [src] = v.split(':');
          if (src!.startsWith('./')) assert.ok(fs.existsSync(path.join(ROOT, src!)), `${name}: ${src} exists`);
          else assert.ok((compose.volumes as Record<string, unknown>)[src!] !== undefined, `${name}: volume ${src} is declared`);
        }
      }
      for (const [name, svc] of Object.entries(services)) {
        if (!['prometheus', 'grafana'].includes(name)) assert.ok(!(svc.profiles ?? []).includes('monitoring'), `${name} is not in the monitoring profile`);
      }
      // Grafana: provisioning where Grafana reads it, dashboards where the provider looks, every ${VAR} of the provisioning in its environment.
      const mounts = new Map((services.grafana!.volumes as string[]).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));
      assert.equal(mounts.get('/etc/grafana/provisioning'), './docker/grafana/provisioning');
      assert.equal(mounts.get(providers[0]!.options.path), './docker/grafana/dashboards');
      const env = services.grafana!.environment as Record<string, string>;
      const provisioning = read('docker/grafana/provisioning/datasources/wa-sip-bridge.yml').split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
      for (const m of provisioning.matchAll(/\$\{?([A-Z_][A-Z0-9_]*)/g)) assert.ok(env[m[1]!] !== undefined, `grafana's environment has ${m[1]}`);
      const home = env.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH!;
      assert.ok(home.startsWith(`${providers[0]!.options.path}/`) && fs.existsSync(path.join(ROOT, 'docker/grafana/dashboards', path.basename(home))), home);
      // Prometheus: its config directory holds prometheus.yml and the rule files it names.
      const pm = new Map((services.prometheus!.volumes as string[]).map((v) => [v.split(':')[1]!, v.split(':')[0]!]));
      assert.equal(pm.get('/etc/prometheus'), './docker/prometheus');
      const prom = yamlOf('docker/prometheus/prometheus.yml');
      for (const f of prom.rule_files as string[]) {
        assert.ok(f.startsWith('/etc/prometheus/') && fs.existsSync(path.join(ROOT, 'docker/prometheus', f.slice('/etc/prometheus/'.length))), f);
      }
    });

    it("compose: Prometheus' start command writes the target and token files prometheus.yml reads", () => {
      const prom = yamlOf('docker/prometheus/prometheus.yml');
      const job = (prom.scrape_configs as Array<Record<string, any>>).find((j) => j.job_name === 'wa-sip-bridge')!;
      assert.equal(job.metrics_path, '/metrics');
      const tokenFile = job.authorization.credentials_file as string;
      const targetsFile = job.file_sd_configs[0].files[0] as string;
      const svc = services.prometheus!;
      assert.deepEqual(svc.entrypoint, ['/bin/sh', '-c']);
      // The command as the container runs it ($$ is compose's escape for $), with /prometheus in a scratch
      // directory and Prometheus itself replaced by echo.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-prom-'));
      try {
        const script = (svc.command as string[])[0]!.replace(/\$\$/g, '$').replace(/(?<!\/etc)\/prometheus\//g, `${dir}/`).replace('exec /bin/prometheus', 'exec echo prometheus');
        assert.ok(script.includes(`${dir}/${path.basename(tokenFile)}`) && script.includes(`${dir}/${path.basename(targetsFile)}`), 'writes both files');
        const run = (env: Record<string, string>) => spawnSync('sh', ['-c', script], { encoding: 'utf8', env: { PATH: process.env.PATH, PROMETHEUS_PORT: '9090', PROMETHEUS_RETENTION: '30d', HTTP_PORT: '3000', ...env } });
        const cases: Array<[Record<string, string>, string, string]> = [
          [{ HTTP_HOST: '', METRICS_TOKEN: '' }, '127.0.0.1:3000', ''],
          [{ HTTP_HOST: '127.0.0.1', METRICS_TOKEN: 'scrape-secret' }, '127.0.0.1:3000', 'scrape-secret'],
          [{ HTTP_HOST: '10.0.0.5', HTTP_PORT: '8080', METRICS_TOKEN: 's' }, '10.0.0.5:8080', 's'],
          [{ HTTP_HOST: '::1', METRICS_TOKEN: '' }, '[::1]:3000', ''],
        ];
        for (const [env, target, token] of cases) {
          const r = run(env);
          assert.equal(r.status, 0, r.stderr);
          assert.match(r.stdout, /--config\.file=\/etc\/prometheus\/prometheus\.yml/);
          assert.match(r.stdout, /--web\.listen-address=127\.0\.0\.1:9090/);
          assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, path.basename(targetsFile)), 'utf8')), [{ targets: [target] }], JSON.stringify(env));
          assert.equal(fs.readFileSync(path.join(dir, path.basename(tokenFile)), 'utf8'), token);
          assert.equal(fs.statSync(path.join(dir, path.basename(tokenFile))).mode & 0o077, 0, 'the token file is private');
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      const grafana = (services.grafana!.command as string[])[0]!.replace(/\$\$/g, '$').replace('exec /run.sh', 'echo started');
      const g = (env: Record<string, string>) => spawnSync('sh', ['-c', grafana], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
      assert.equal(g({ GF_SECURITY_ADMIN_PASSWORD: '', GRAFANA_DB_PASSWORD: 'x' }).status, 1, 'refuses to start without an admin password');
      assert.equal(g({ GF_SECURITY_ADMIN_PASSWORD: 'x', GRAFANA_DB_PASSWORD: '' }).status, 1, 'refuses to start without the reader password');
      assert.equal(g({ GF_SECURITY_ADMIN_PASSWORD: 'x', GRAFANA_DB_PASSWORD: 'y' }).stdout.trim(), 'started');
    });
  });

  describe('against real rows and a started bridge', function () {
    this.timeout(90000);
    const METRICS_TOKEN = 'metrics-token-for-dashboards';
    const ADMIN_API_TOKEN = 'admin-token-for-dashboards';
    let stack: TestStack;
    let db: Sequelize;
    const role = `grafana_reader_t${process.pid}`;

    before(async () => {
      stack = await startStack({ METRICS_TOKEN, ADMIN_API_TOKEN });
      for (const c of CALLS) await writeCall(stack, c);
      db = connectDatabase(infra.databaseUrl);
      await createReadOnlyRole(db, role);
    });
    after(async () => {
      await db?.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await db?.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await db?.close();
      await stack?.stop();
    });

    /** Runs a query as the read-only role, in a read-only transaction (as the role's login would). */
    function asReader(sql: string): Promise<{ rows: Array<Record<string, unknown>>; columns: string[] }> {
      return db.transaction(async (transaction) => {
        await db.query('SET TRANSACTION READ ONLY', { transaction });
        await db.query(`SET LOCAL ROLE ${role}`, { transaction });
        await db.query("SET LOCAL statement_timeout = '30s'", { transaction });
        const rows = await db.query<Record<string, unknown>>(sql, { type: QueryTypes.SELECT, transaction });
        return { rows, columns: rows[0] ? Object.keys(rows[0]) : [] };
      });
    }

    it('the read-only role reads calls and nothing else, and cannot write', async () => {
      const n = await asReader('SELECT count(*)::int AS n FROM calls');
      assert.ok((n.rows[0]!.n as number) >= CALLS.length);
      await assert.rejects(asReader('SELECT count(*) FROM webhook_events'), /permission denied/);
      await assert.rejects(asReader('SELECT count(*) FROM call_permission_replies'), /permission denied/);
      await assert.rejects(db.transaction(async (transaction) => {
        await db.query(`SET LOCAL ROLE ${role}`, { transaction });
        await db.query("UPDATE calls SET agent = 'x' WHERE false", { transaction });
      }), /permission denied/);
    });

    const SCENARIOS: Scenario[] = [
      { name: 'defaults (all directions and numbers, per hour, MOS below 3.5)', direction: null, business: null, bucket: '1h', mos: '3.5' },
      { name: 'inbound only', direction: ['inbound'], business: null, bucket: '1h', mos: '3.5' },
      { name: 'one business number', direction: null, business: [B2], bucket: '1h', mos: '3.5' },
      { name: 'outbound, per day, MOS below 4.1', direction: ['outbound'], business: [B1], bucket: '1d', mos: '4.1' },
      { name: 'a range without calls', direction: null, business: null, bucket: '1h', mos: '3.5', from: new Date('2019-01-01T00:00:00Z'), to: new Date('2019-01-02T00:00:00Z') },
    ];

    it('the business-number variable lists the numbers with calls in the range', async () => {
      const v = cdr.templating.list.find((x) => x.name === 'business')!;
      const sql = expandSql(String(typeof v.query === 'string' ? v.query : v.query.query), SCENARIOS[0]!, []);
      const { rows, columns } = await asReader(sql);
      // The order is Grafana's (the variable's sort), not the database collation's.
      // Always "(none)" too, so that "All" never expands to an empty IN () on a range without calls.
      assert.deepEqual(rows.map((r) => String(r[columns[0]!])).sort(), [...new Set(['(none)', ...inRange().map((c) => c.business ?? '(none)')])].sort());
    });

    for (const s of SCENARIOS) {
      it(`every CDR panel's SQL gives the figures the calls imply: ${s.name}`, async () => {
        const businessVar = cdr.templating.list.find((x) => x.name === 'business')!;
        const allBusiness = (await asReader(expandSql(String(typeof businessVar.query === 'string' ? businessVar.query : businessVar.query.query), s, []))).rows.map((r) => String(Object.values(r)[0]));
        const checked: string[] = [];
        for (const p of queryPanels(cdr)) {
          const expect = EXPECTED[p.title];
          assert.ok(expect, `panel "${p.title}" has an expectation in this test`);
          for (const t of p.targets!) {
            const sql = expandSql(t.rawSql!, s, allBusiness);
            let result: Awaited<ReturnType<typeof asReader>>;
            try {
              result = await asReader(sql);
            } catch (err) {
              assert.fail(`panel "${p.title}": ${(err as Error).message}\n${sql}`);
            }
            if (t.format === 'time_series' && result.rows.length) assert.equal(result.columns[0], 'time', `${p.title}: a time series starts with its time column`);
            const calls = selected(s);
            expect(normalize(result.rows), calls, s, p.title);
          }
          checked.push(p.title);
        }
        assert.deepEqual(checked.sort(), Object.keys(EXPECTED).sort(), 'every expectation belongs to a panel');
      });
    }

    it('the CDR dashboard and GET /api/reports/summary agree (same definitions)', async () => {
      const s = SCENARIOS[0]!;
      const api = async (groupBy: string) => {
        const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api/reports/summary?from=${FROM.toISOString()}&to=${TO.toISOString()}&group_by=${groupBy}`,
          { headers: { Authorization: `Bearer ${ADMIN_API_TOKEN}` } });
        assert.equal(res.status, 200);
        return (await res.json()) as { groups: Array<Record<string, unknown>>; totals: Record<string, number | null> };
      };
      const panelRows = async (title: string) => {
        const p = queryPanels(cdr).find((x) => x.title === title)!;
        return normalize((await asReader(expandSql(p.targets![0]!.rawSql!, s, ['(none)', B1, B2]))).rows);
      };
      const figures = (r: Row) => ({
        offered: r.offered, answered: r.answered, missed: r.missed, abandoned: r.abandoned, answer_rate: r['answer rate'],
        wait_seconds_avg: r['avg wait'] ?? r['wait avg'], wait_seconds_p90: r['p90 wait'] ?? r['wait p90'], talk_seconds_total: r['talk time'] ?? r['talk total'],
      });
      const fromApi = (f: Record<string, unknown>) => ({
        offered: f.offered, answered: f.answered, missed: f.missed, abandoned: f.abandoned, answer_rate: f.answer_rate,
        wait_seconds_avg: f.wait_seconds_avg, wait_seconds_p90: f.wait_seconds_p90, talk_seconds_total: f.talk_seconds_total,
      });
      // The API rounds to 4 (rate) and 3 (seconds) decimals.
      const round = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? Number(v.toFixed(3)) : v]));
      const totals = await api('day');
      same([round(figures((await panelRows('Totals'))[0]!))], [round(fromApi(totals.totals))], 'Totals panel vs summary totals');
      const byNumber = await api('business_number');
      const panel = (await panelRows('By business number')).map((r) => round({ key: r['business number'] === '(none)' ? null : r['business number'], ...figures(r) }));
      const fromSummary = byNumber.groups.map((g) => round({ key: g.group, ...fromApi(g) }));
      const byKey = (a: Row, b: Row) => String(a.key).localeCompare(String(b.key));
      same(panel.sort(byKey), fromSummary.sort(byKey), '"By business number" panel vs summary grouped by business_number');
    });

    it("every PromQL expression parses, and every metric and grouping label it uses is in the bridge's /metrics", async () => {
      const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(res.status, 200, 'GET /metrics with METRICS_TOKEN');
      const exposition = parseExposition(await res.text());
      const exprs: Array<[string, string]> = [
        ...queryPanels(live).flatMap((p) => p.targets!.map((t): [string, string] => [`live: ${p.title}`, t.expr!])),
        ...live.templating.list.filter((v) => v.type === 'query').map((v): [string, string] => [`live variable ${v.name}`, labelValuesSelector(v)]),
        ...(yamlOf('docker/prometheus/alerts.yml').groups as Array<{ rules: Array<{ alert: string; expr: string }> }>)
          .flatMap((g) => g.rules.map((r): [string, string] => [`alert ${r.alert}`, r.expr])),
      ];
      const problems: string[] = [];
      let labelChecks = 0;
      for (const [where, raw] of exprs) {
        const expr = raw.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$instance/g, '.*');
        const tree = promqlParser.parse(expr);
        const errors: number[] = [];
        tree.iterate({ enter: (n) => { if (n.type.isError) errors.push(n.from); } });
        if (errors.length) problems.push(`${where}: PromQL syntax error at ${errors[0]}: ${expr}`);
        for (const { metric, labels } of selectorsOf(tree.topNode, expr)) {
          const known = exposition.get(metric);
          if (!known && !SYNTHETIC.has(metric)) {
            problems.push(`${where}: ${metric} is not in /metrics`);
            continue;
          }
          for (const l of labels) {
            if (!known || known.labels === null || ['job', 'instance'].includes(l) || (l === 'le' && metric.endsWith('_bucket'))) continue;
            labelChecks++;
            if (!known.labels.has(l)) problems.push(`${where}: ${metric} has no label "${l}" (it has ${[...known.labels].join(', ') || 'none'})`);
          }
        }
      }
      assert.deepEqual(problems, []);
      assert.ok(labelChecks > 10, `labels were checked against samples (${labelChecks})`);
    });
  });
});

/** pg returns bigint and numeric as strings and timestamps as Dates: numbers and ISO strings here. */
function normalize(rows: Row[]): Row[] {
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => {
    if (v instanceof Date) return [k, v.toISOString()];
    if (typeof v === 'string' && /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i.test(v) && !/^\+/.test(v) && k !== 'agent') return [k, Number(v)];
    return [k, v];
  })));
}

// ---------------------------------------------------------------------------------------------------
// Grafana's expansion of a Postgres query.

/** RFC 3339 with Go's RFC3339Nano trimming (no trailing zero fraction), as macros.go formats times. */
const goTime = (d: Date) => d.toISOString().replace(/\.000Z$/, 'Z').replace(/(\.\d*?)0+Z$/, '$1Z');
const sqlQuote = (v: string) => `'${v.replace(/'/g, "''")}'`;

/**
 * A panel's SQL as Grafana runs it: first the frontend replaces template variables (a multi-value or
 * include-All variable as quoted, comma-separated literals; a single value as-is with quotes doubled),
 * then the backend replaces $__interval/$__interval_ms/$__unixEpochFrom()/$__unixEpochTo()
 * (sqleng.Interpolate), then the Postgres macros (macros.go). Anything left that looks like a variable or
 * macro is an error.
 */
function expandSql(sql: string, s: Scenario, allBusiness: string[]): string {
  const vars = new Map<string, Variable>(cdr.templating.list.map((v) => [v.name, v]));
  const valueOf = (name: string): string | string[] | undefined => {
    switch (name) {
      case 'direction': return s.direction ?? ['$__all'];
      case 'business': return s.business ?? ['$__all'];
      case 'bucket': return s.bucket;
      case 'mos_threshold': return s.mos;
      default: return undefined;
    }
  };
  const format = (name: string, fmt: string | undefined): string | null => {
    const v = vars.get(name);
    let value = valueOf(name);
    if (!v || value === undefined) return null;
    if (Array.isArray(value) && value.includes('$__all')) {
      if (v.allValue) return v.allValue;
      value = name === 'business' ? allBusiness : (v.options ?? []).map((o) => o.value).filter((x) => x !== '$__all');
    }
    if (fmt === 'raw') return Array.isArray(value) ? value.join(',') : value;
    if (fmt === 'csv') return Array.isArray(value) ? value.join(',') : value;
    if (fmt === 'singlequote' || fmt === 'sqlstring' || Array.isArray(value) || v.multi || v.includeAll) {
      return (Array.isArray(value) ? value : [value]).map(sqlQuote).join(',');
    }
    return value.replace(/'/g, "''");
  };
  let out = sql.replace(/\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]/g, (m, a?: string, b?: string, fmt?: string, c?: string) => format((a ?? b ?? c)!, fmt) ?? m);
  const intervalMs = s.bucket === '1h' ? 3600_000 : 86_400_000;
  const from = s.from ?? FROM;
  const to = s.to ?? TO;
  out = out.replaceAll('$__interval_ms', String(intervalMs)).replaceAll('$__interval', s.bucket)
    .replaceAll('$__unixEpochFrom()', String(from.getTime() / 1000)).replaceAll('$__unixEpochTo()', String(to.getTime() / 1000));
  out = out.replace(/\$([_a-zA-Z0-9]+)\(([^)]*)\)/g, (_m, name: string, argText: string) => {
    const args = argText.split(',').map((x) => x.trim());
    const interval = () => {
      const m = /^'?(\d+)([smhdw])'?$/.exec(args[1] ?? '');
      assert.ok(m, `${name}: interval ${args[1]}`);
      return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's']!;
    };
    switch (name) {
      case '__time': return `${args[0]} AS "time"`;
      case '__timeEpoch': return `extract(epoch from ${args[0]}) as "time"`;
      case '__timeFilter': return `${args[0]} BETWEEN '${goTime(from)}' AND '${goTime(to)}'`;
      case '__timeFrom': return `'${goTime(from)}'`;
      case '__timeTo': return `'${goTime(to)}'`;
      case '__timeGroup': return `floor(extract(epoch from ${args[0]})/${interval()})*${interval()}`;
      case '__timeGroupAlias': return `floor(extract(epoch from ${args[0]})/${interval()})*${interval()} AS "time"`;
      case '__unixEpochFilter': return `${args[0]} >= ${from.getTime() / 1000} AND ${args[0]} <= ${to.getTime() / 1000}`;
      default: throw new Error(`unknown macro $${name}`);
    }
  });
  assert.doesNotMatch(out, /\$[A-Za-z_{]|\[\[/, `no variable or macro left unexpanded:\n${out}`);
  return out;
}

/** Creates the read-only role from docker/grafana/readonly-role.sql (with psql, as the docs say; else emulated). */
async function createReadOnlyRole(db: Sequelize, role: string): Promise<void> {
  const sql = read('docker/grafana/readonly-role.sql').replaceAll('grafana_reader', role);
  const password = crypto.randomBytes(12).toString('hex');
  const dbName = new URL(infra.databaseUrl).pathname.slice(1);
  const psql = spawnSync('psql', ['--version'], { encoding: 'utf8' });
  if (!psql.error && psql.status === 0) {
    const r = spawnSync('psql', [infra.databaseUrl, '-q', '-v', 'ON_ERROR_STOP=1', '-v', `password=${password}`], { input: sql, encoding: 'utf8' });
    assert.equal(r.status, 0, `psql ran docker/grafana/readonly-role.sql: ${r.stderr}`);
    return;
  }
  const body = sql.split('\n').filter((l) => !l.startsWith('--')).join('\n')
    .replaceAll(":'password'", sqlQuote(password)).replaceAll(':"DBNAME"', `"${dbName}"`);
  await db.query(body);
}

// ---------------------------------------------------------------------------------------------------
// PromQL.

/** Metrics Prometheus makes up itself for each target. */
const SYNTHETIC = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

/** The selector a query variable reads label values of (label_values(selector, label)). */
function labelValuesSelector(v: Variable): string {
  const text = typeof v.query === 'string' ? v.query : v.query.query;
  const m = /^label_values\((.*),\s*(\w+)\)$/.exec(text.trim());
  assert.ok(m, `variable ${v.name}: label_values(selector, label)`);
  return `group by (${m[2]}) (${m[1]})`;
}

/** Each vector selector's metric, with the labels its matchers and the enclosing aggregations' by (...) name. */
function selectorsOf(top: SyntaxNode, text: string): Array<{ metric: string; labels: string[] }> {
  const out: Array<{ metric: string; labels: string[] }> = [];
  const visit = (n: SyntaxNode, grouping: string[]) => {
    let g = grouping;
    if (n.name === 'AggregateExpr') {
      const mod = n.getChild('AggregateModifier');
      if (mod?.getChild('By')) g = [...grouping, ...labelNames(mod.getChild('GroupingLabels'), text)];
    }
    if (n.name === 'VectorSelector') {
      const id = n.getChild('Identifier');
      if (id) {
        const matchers = labelNames(n.getChild('LabelMatchers'), text);
        out.push({ metric: text.slice(id.from, id.to), labels: [...new Set([...matchers, ...g])] });
      }
    }
    for (let c = n.firstChild; c; c = c.nextSibling) visit(c, g);
  };
  visit(top, []);
  return out;
}

function labelNames(n: SyntaxNode | null, text: string): string[] {
  const out: string[] = [];
  if (!n) return out;
  const walk = (x: SyntaxNode) => {
    if (x.name === 'LabelName') out.push(text.slice(x.from, x.to));
    for (let c = x.firstChild; c; c = c.nextSibling) walk(c);
  };
  walk(n);
  return out;
}

/**
 * The metrics of a Prometheus text exposition by the sample names a query can use (a histogram's
 * _bucket, _sum, _count), with the label names seen on its samples (null: no samples yet).
 */
function parseExposition(text: string): Map<string, { type: string; labels: Set<string> | null }> {
  const out = new Map<string, { type: string; labels: Set<string> | null }>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      const [, name, type] = t as unknown as [string, string, string];
      const names = type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : type === 'summary' ? [name, `${name}_sum`, `${name}_count`] : [name];
      for (const n of names) out.set(n, { type, labels: null });
      continue;
    }
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!s || line.startsWith('#')) continue;
    const entry = out.get(s[1]!);
    if (!entry) continue;
    entry.labels ??= new Set();
    for (const m of (s[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) entry.labels.add(m[1]!);
  }
  return out;
}

function findRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'docker-compose.yml')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

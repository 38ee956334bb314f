import assert from 'node:assert/strict';
import { ConnectionRefusedError, DatabaseError, UniqueConstraintError } from 'sequelize';
import { CdrSpillSink, CdrWrite, SpillableRecorder } from '../../src/cdr/call-recorder';
import { CallFields, CallRecorder, CdrStore, CdrWrites, RecorderOptions } from '../../src/cdr/store';
import { isTransientDbError } from '../../src/cdr/write-safety';
import { createLogger } from '../../src/log';

const PHONE = '+6281361905133';

type Written = { kind: 'create' | 'update'; fields: CallFields } | { kind: 'event'; type: string; at: Date };

/**
 * A CdrStore stand-in: records each write that "reached Postgres", and fails or holds writes as the
 * test says. `failWith` is asked before every attempt; it returns the error to throw, or null.
 */
class FakeStore implements CdrWrites {
  readonly written: Written[] = [];
  attempts = 0;
  failWith: (attempt: number) => Error | null = () => null;
  /** While set, every write waits for it. */
  hold: Promise<void> | null = null;
  /** Told when an attempt starts. */
  onAttempt: (() => void) | null = null;
  spill: CdrSpillSink | null = null;

  private async run(w: Written): Promise<void> {
    const err = this.failWith(++this.attempts);
    this.onAttempt?.();
    if (this.hold) await this.hold;
    if (err) throw err;
    this.written.push(w);
  }

  createCall(_id: string, fields: Parameters<CdrStore['createCall']>[1]): Promise<void> {
    return this.run({ kind: 'create', fields });
  }
  updateCall(_id: string, fields: CallFields): Promise<void> {
    return this.run({ kind: 'update', fields });
  }
  addEvent(_id: string, type: string, _detail: object | null, at = new Date()): Promise<void> {
    return this.run({ kind: 'event', type, at });
  }
}

/** A spill that keeps what it is handed, in order. */
class FakeSpill implements CdrSpillSink {
  readonly lines: Array<{ callId: string; write: CdrWrite; why: string }> = [];
  readonly live = new Set<SpillableRecorder>();
  append(callId: string, writes: readonly CdrWrite[], why: string): void {
    for (const write of writes) this.lines.push({ callId, write, why });
  }
  track(r: SpillableRecorder): void {
    this.live.add(r);
  }
  untrack(r: SpillableRecorder): void {
    this.live.delete(r);
  }
  /** What was spilled, as "create offered", "event ended", "update ended". */
  get written(): string[] {
    return this.lines.map(({ write: w }) => (w.kind === 'event' ? `event ${w.type}` : `${w.kind} ${w.fields.state}`));
  }
}

/** A clock that moves only when the recorder waits: retries take no real time. */
class FakeClock {
  t = 0;
  waits: number[] = [];
  readonly now = () => this.t;
  readonly sleep = (ms: number) => {
    this.waits.push(ms);
    this.t += ms;
    return Promise.resolve();
  };
}

function logCapture(): { lines: () => Array<Record<string, unknown>>; text: () => string; log: ReturnType<typeof createLogger> } {
  let out = '';
  const log = createLogger('debug', {}, { destination: { write: (s: string) => void (out += s) } });
  return {
    log,
    text: () => out,
    lines: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const refused = () => new ConnectionRefusedError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));

/** What Sequelize throws when Postgres refuses a statement: it carries the SQL and its parameters. */
function badValue(): Error {
  const parent = Object.assign(new Error('invalid input syntax for type integer: "abc"'), {
    code: '22P02', sql: `UPDATE "calls" SET "customer_number"='${PHONE}'`, parameters: [PHONE],
  });
  return new DatabaseError(parent as ConstructorParameters<typeof DatabaseError>[0]);
}

function recorder(store: FakeStore, clock: FakeClock, log: ReturnType<typeof createLogger>, opts: Partial<RecorderOptions> = {}): CallRecorder {
  return new CallRecorder(store, 'call-1', log, { retryForMs: 60000, firstBackoffMs: 100, maxBackoffMs: 2000, startDelayMs: 0, now: clock.now, sleep: clock.sleep, ...opts });
}

const start = { direction: 'inbound' as const, state: 'offered', offered_at: new Date(0), customer_number: PHONE };

describe('CallRecorder', () => {
  it('retries writes while Postgres is unreachable, backing off, and writes them all in order once it answers', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    const cap = logCapture();
    store.failWith = (n) => (n <= 6 ? refused() : null);
    const rec = recorder(store, clock, cap.log);
    rec.create(start);
    rec.event('offered');
    rec.update({ state: 'pre_accepted' });
    rec.event('pre_accepted');
    rec.update({ state: 'ended', outcome: 'answered' });
    rec.event('ended');
    await rec.flushed();
    assert.deepEqual(store.written.map((w) => (w.kind === 'event' ? `event ${w.type}` : `${w.kind} ${w.fields.state}`)), [
      'create offered', 'event offered', 'update pre_accepted', 'event pre_accepted', 'update ended', 'event ended',
    ]);
    assert.equal(rec.lostWrites, 0);
    assert.deepEqual(clock.waits, [100, 200, 400, 800, 1600, 2000], 'doubling backoff, capped');
    const warnings = cap.lines().filter((l) => /retrying until Postgres answers/.test(String(l.msg)));
    assert.equal(warnings.length, 1, 'one warning per outage, not one per attempt');
    assert.deepEqual(warnings[0]!.err, { message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' });
    assert.ok(cap.lines().some((l) => /go through again/.test(String(l.msg))));
  });

  it('keeps each event\'s time from when it happened, not from when the retry wrote it', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    store.failWith = (n) => (n <= 3 ? refused() : null);
    const rec = recorder(store, clock, logCapture().log);
    rec.create(start);
    const before = Date.now();
    rec.event('offered');
    await rec.flushed();
    const ev = store.written[1]!;
    assert.equal(ev.kind, 'event');
    assert.ok(ev.kind === 'event' && ev.at.getTime() >= before && ev.at.getTime() <= Date.now());
  });

  it('cuts an over-long string to its column (the row is written, not lost) and says which field', async () => {
    const store = new FakeStore();
    const cap = logCapture();
    const rec = recorder(store, new FakeClock(), cap.log);
    const phoneId = '7'.repeat(70);
    rec.create({ ...start, phone_id: phoneId });
    rec.event('x'.repeat(60));
    await rec.flushed();
    const created = store.written[0]!;
    assert.ok(created.kind === 'create');
    assert.equal(created.fields.phone_id, '7'.repeat(64));
    assert.equal(created.fields.customer_number, PHONE, 'fields that fit are untouched');
    assert.ok(store.written[1]!.kind === 'event' && store.written[1]!.type === 'x'.repeat(48));
    const cut = cap.lines().find((l) => l.field === 'phone_id');
    assert.ok(cut, cap.text());
    assert.equal(cut.length, 70);
    assert.equal(cut.max, 64);
    assert.equal(cap.text().includes(phoneId), false, 'the value itself is not logged');
    assert.equal(rec.fields.phone_id, '7'.repeat(64), 'the live view shows what was written');
  });

  it('skips a write Postgres refuses for its content, logs its message and code without the SQL or numbers, and goes on', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    const cap = logCapture();
    store.failWith = (n) => (n === 2 ? badValue() : null);
    const rec = recorder(store, clock, cap.log);
    rec.create(start);
    rec.update({ sip_final_code: 200 });
    rec.event('ended');
    await rec.flushed();
    assert.deepEqual(store.written.map((w) => w.kind), ['create', 'event']);
    assert.equal(rec.lostWrites, 1);
    assert.deepEqual(clock.waits, [], 'not retried');
    const line = cap.lines().find((l) => /refused by Postgres/.test(String(l.msg)));
    assert.deepEqual(line?.err, { message: 'invalid input syntax for type integer: "abc"', code: '22P02' });
    assert.equal(cap.text().includes(PHONE), false, cap.text());
    assert.equal(cap.text().includes('UPDATE'), false, 'no SQL in the log');
  });

  it('gives up loudly once Postgres has been away past the retry limit, so flushed() resolves; later writes get one try each', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    const cap = logCapture();
    let down = true;
    store.failWith = () => (down ? refused() : null);
    const given: number[] = [];
    const rec = recorder(store, clock, cap.log, { retryForMs: 10000, onGiveUp: (n) => given.push(n) });
    rec.create(start);
    rec.event('offered');
    rec.event('pre_accepted');
    await rec.flushed();
    assert.ok(clock.t >= 10000 && clock.t < 10000 + 2000, `gave up after ${clock.t} ms of (fake) time`);
    assert.equal(rec.lostWrites, 3);
    assert.deepEqual(given, [3]);
    assert.ok(cap.lines().some((l) => l.level === 50 && /given up/.test(String(l.msg)) && l.writes === 3));

    const waited = clock.waits.length;
    rec.event('still_down');
    await rec.flushed();
    assert.equal(clock.waits.length, waited, 'no retries while given up');
    assert.equal(rec.lostWrites, 4);

    down = false;
    rec.event('back');
    await rec.flushed();
    assert.deepEqual(store.written.map((w) => (w.kind === 'event' ? w.type : w.kind)), ['back']);
  });

  it('past the retry limit, with a spill, hands the queued writes to it in order and sends the later ones after them (none lost, none tried)', async () => {
    const store = new FakeStore();
    const spill = (store.spill = new FakeSpill());
    const clock = new FakeClock();
    const cap = logCapture();
    store.failWith = () => refused();
    const given: number[] = [];
    const rec = recorder(store, clock, cap.log, { retryForMs: 10000, onGiveUp: (n) => given.push(n) });
    rec.create(start);
    rec.event('offered');
    rec.update({ state: 'pre_accepted' });
    await rec.flushed();
    assert.deepEqual(spill.written, ['create offered', 'event offered', 'update pre_accepted']);
    assert.ok(spill.lines.every((l) => l.callId === 'call-1' && /past the retry limit/.test(l.why)), JSON.stringify(spill.lines));
    assert.deepEqual(given, [], 'nothing counted as dropped: it is all in the spill');
    assert.equal(rec.lostWrites, 3, 'yet none of it reached Postgres');
    assert.equal(spill.live.size, 0, 'nothing left queued');
    assert.ok(cap.lines().some((l) => l.level === 40 && /spilled to file/.test(String(l.msg)) && l.callId === 'call-1' && l.writes === 3));

    // Postgres back or not, the rest of the call follows what was spilled (so the replay keeps the order).
    store.failWith = () => null;
    const attempts = store.attempts;
    rec.update({ state: 'ended' });
    rec.event('ended');
    await rec.flushed();
    assert.deepEqual(spill.written, ['create offered', 'event offered', 'update pre_accepted', 'update ended', 'event ended']);
    assert.equal(store.attempts, attempts, 'no write tried against Postgres after the spill');
    assert.deepEqual(store.written, []);
    assert.equal(rec.lostWrites, 5);
  });

  it('at shutdown, hands every queued write to the spill, the one in flight too, and writes nothing more itself', async () => {
    const store = new FakeStore();
    const spill = (store.spill = new FakeSpill());
    let release!: () => void;
    store.hold = new Promise((r) => (release = r));
    const attempted = new Promise<void>((r) => (store.onAttempt = r));
    const rec = recorder(store, new FakeClock(), logCapture().log);
    rec.create(start);
    rec.event('offered');
    await attempted;
    assert.deepEqual([...spill.live], [rec], 'a recorder with writes queued is known to the spill');
    for (const r of [...spill.live]) r.spillQueued('the bridge stopped');
    assert.deepEqual(spill.written, ['create offered', 'event offered']);
    assert.equal(spill.live.size, 0);
    release();
    rec.event('late');
    await rec.flushed();
    assert.deepEqual(store.written.map((w) => w.kind), ['create'], 'only the write that was in flight reached the store (the replay takes it as done)');
    assert.equal(store.attempts, 1);
    assert.deepEqual(spill.written, ['create offered', 'event offered', 'event late']);
  });

  it('holds a bounded queue: past the limit field updates merge (the last value wins) and timeline events are dropped, counted', async () => {
    const store = new FakeStore();
    const cap = logCapture();
    let release!: () => void;
    store.hold = new Promise((r) => (release = r));
    const rec = recorder(store, new FakeClock(), cap.log, { maxQueued: 4 });
    rec.create(start); // in flight, held
    rec.update({ state: 'pre_accepted' });
    rec.event('a');
    rec.update({ state: 'ringing' });
    rec.event('b'); // the queue is full (4): dropped
    rec.update({ state: 'accepted', agent: 'agent101' }); // merges into the queued update
    rec.event('c'); // dropped
    store.hold = null;
    release();
    await rec.flushed();
    assert.deepEqual(store.written.map((w) => (w.kind === 'event' ? `event ${w.type}` : `${w.kind} ${w.fields.state}`)), [
      'create offered', 'update pre_accepted', 'event a', 'update accepted',
    ]);
    assert.equal(rec.lostWrites, 2);
    assert.equal(cap.lines().filter((l) => /backing up/.test(String(l.msg))).length, 1, 'said once');
  });

  it('merges back-to-back updates that are still queued, never into the write in flight', async () => {
    const store = new FakeStore();
    let release!: () => void;
    store.hold = new Promise((r) => (release = r));
    const rec = recorder(store, new FakeClock(), logCapture().log);
    rec.update({ state: 'ringing' });
    await new Promise((r) => setImmediate(r)); // writes start on the next turn: this one is now in flight
    rec.update({ pbx_ringing_at: new Date(1) });
    rec.update({ state: 'answered' });
    store.hold = null;
    release();
    await rec.flushed();
    assert.equal(store.written.length, 2);
    assert.deepEqual(store.written[1], { kind: 'update', fields: { pbx_ringing_at: new Date(1), state: 'answered' } });
  });

  it('starts writing on the next turn, so the updates of one step become one statement', async () => {
    const store = new FakeStore();
    const rec = recorder(store, new FakeClock(), logCapture().log);
    rec.update({ state: 'answered' });
    rec.update({ agent: 'agent101' });
    assert.equal(store.written.length, 0, 'nothing written inline');
    await rec.flushed();
    assert.deepEqual(store.written, [{ kind: 'update', fields: { state: 'answered', agent: 'agent101' } }]);
  });

  it('retries an attempt that never comes back (bounded by attemptTimeoutMs)', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    let first = true;
    const rec = recorder(store, clock, logCapture().log, { attemptTimeoutMs: 20 });
    const hang = new Promise<void>(() => undefined);
    store.failWith = () => {
      store.hold = first ? hang : null;
      first = false;
      return null;
    };
    rec.create(start);
    await rec.flushed();
    assert.equal(store.attempts, 2);
    assert.deepEqual(store.written.map((w) => w.kind), ['create']);
    assert.equal(rec.lostWrites, 0);
  });

  it('takes a create whose retry finds its own row (the timed-out attempt committed after all) as written, not refused', async () => {
    const store = new FakeStore();
    const clock = new FakeClock();
    // What Postgres answers the retry once the first INSERT, held behind a lock past attemptTimeoutMs, has committed.
    const pkeyTaken = () => new UniqueConstraintError({ parent: Object.assign(new Error('duplicate key value violates unique constraint "calls_pkey"'), { code: '23505', constraint: 'calls_pkey', sql: '' }) as ConstructorParameters<typeof DatabaseError>[0] });
    const hang = new Promise<void>(() => undefined);
    store.failWith = (n) => {
      store.hold = n === 1 ? hang : null;
      return n === 2 ? pkeyTaken() : null;
    };
    const rec = recorder(store, clock, logCapture().log, { attemptTimeoutMs: 20 });
    rec.create(start);
    rec.update({ state: 'ended' });
    await rec.flushed();
    assert.equal(rec.lostWrites, 0, 'nothing lost: the row is there');
    assert.deepEqual(store.written.map((w) => w.kind), ['update'], 'the update after it goes on');
    // A first attempt refused for its key is a real refusal (another call's id), not a retry finding its own row.
    const store2 = new FakeStore();
    store2.failWith = (n) => (n === 1 ? pkeyTaken() : null);
    const rec2 = recorder(store2, new FakeClock(), logCapture().log);
    rec2.create(start);
    await rec2.flushed();
    assert.equal(rec2.lostWrites, 1);
  });

  it('tells passing database failures from refusals', () => {
    assert.equal(isTransientDbError(refused()), true);
    assert.equal(isTransientDbError(new DatabaseError(Object.assign(new Error('Query read timeout'), { sql: '' }) as ConstructorParameters<typeof DatabaseError>[0])), true);
    assert.equal(isTransientDbError(new DatabaseError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', sql: '' }) as ConstructorParameters<typeof DatabaseError>[0])), true);
    assert.equal(isTransientDbError(badValue()), false);
    assert.equal(isTransientDbError(new DatabaseError(Object.assign(new Error('value too long for type character varying(64)'), { code: '22001', sql: '' }) as ConstructorParameters<typeof DatabaseError>[0])), false);
  });
});

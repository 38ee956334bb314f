import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sequelize } from 'sequelize';
import { connectDatabase, migrate } from '../../src/cdr/db';
import { DrachtioServer, findDrachtio, startDrachtio } from './drachtio';
import { ManagedProcess } from './processes';
import { startRtpengine } from './rtpengine';

/** Real infrastructure for a test run or a benchmark: a fresh database, an rtpengine, a drachtio-server. */
export interface Infra {
  databaseUrl: string;
  rtpengineNg: { host: string; port: number } | null;
  rtpengineDtmfLog: { host: string; port: number } | null;
  drachtio: DrachtioServer | null;
  drachtioMissing: string | null;
  isolated: boolean;
  /** Where the bridge writes media files for rtpengine (music on hold, silence): rtpengine runs here too. */
  mediaDir: string;
}

export const infra: Infra = { databaseUrl: '', rtpengineNg: null, rtpengineDtmfLog: null, drachtio: null, drachtioMissing: null, isolated: process.env.WASB_ISOLATED === '1', mediaDir: '' };

let rtpengine: ManagedProcess | null = null;
let adminDb: Sequelize | null = null;
let dbName = '';

/**
 * The database each run creates its own from when TEST_DATABASE_URL is not set: the role (a superuser:
 * tests create databases and roles) and `test` database that scripts/setup.sh makes, with a password,
 * so Debian's default authentication accepts it. In the private network namespace only loopback
 * exists; Postgres is reached through its socket.
 */
export function defaultTestDatabaseUrl(isolated: boolean): string {
  return isolated ? 'postgres://wasb_test:localdev@localhost/test?host=/var/run/postgresql' : 'postgres://wasb_test:localdev@127.0.0.1:5432/test';
}

function baseDatabaseUrl(): string {
  return process.env.TEST_DATABASE_URL || defaultTestDatabaseUrl(infra.isolated);
}

/** The run's database reached at another TCP address (a relay a test can cut), with the same credentials. */
export function databaseUrlVia(port: number, host = '127.0.0.1'): string {
  const u = new URL(infra.databaseUrl);
  u.hostname = host;
  u.port = String(port);
  u.searchParams.delete('host');
  return u.toString();
}

export async function startInfra(): Promise<Infra> {
  const base = baseDatabaseUrl();
  adminDb = connectDatabase(base);
  dbName = `wasb_test_${process.pid}_${Date.now().toString(36)}`;
  await adminDb.query(`CREATE DATABASE ${dbName}`);
  const u = new URL(base);
  u.pathname = `/${dbName}`;
  infra.databaseUrl = u.toString();
  const db = connectDatabase(infra.databaseUrl);
  await migrate(db);
  await db.close();

  infra.mediaDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-media-'));
  const r = await startRtpengine();
  rtpengine = r.proc;
  infra.rtpengineNg = r.ng;
  infra.rtpengineDtmfLog = r.dtmfLog;

  const bin = process.env.SKIP_DRACHTIO ? null : findDrachtio();
  if (bin) infra.drachtio = await startDrachtio(bin);
  else infra.drachtioMissing = 'drachtio-server not found (set DRACHTIO_BIN or put `drachtio` on PATH)';
  return infra;
}

/** The run's rtpengine process (the one the bridges under test use), for benchmarks that read its CPU time. */
export function infraRtpengine(): ManagedProcess | null {
  return rtpengine;
}

export async function stopInfra(): Promise<void> {
  await infra.drachtio?.proc.stop();
  await rtpengine?.stop();
  if (infra.mediaDir) fs.rmSync(infra.mediaDir, { recursive: true, force: true });
  if (adminDb) {
    await adminDb.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
    await adminDb.close();
  }
}

/**
 * Runs a benchmark's `main` on the run's infrastructure and exits: 0 when it finished, 1 when it threw.
 * rtpengine and drachtio-server are stopped either way, so a failed bench never leaves them behind.
 */
export function runBench(main: () => Promise<void>): void {
  main().then(
    async () => {
      await stopInfra();
      process.exit(0);
    },
    async (err: unknown) => {
      console.error(err);
      await stopInfra().catch(() => undefined);
      process.exit(1);
    },
  );
}

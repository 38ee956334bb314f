import { Sequelize } from 'sequelize';
import { connectDatabase, migrate } from '../../src/cdr/db';
import { DrachtioServer, findDrachtio, startDrachtio } from './drachtio';
import { ManagedProcess } from './processes';
import { startRtpengine } from './rtpengine';

/** Shared, real infrastructure for the whole run: a fresh database, an rtpengine, a drachtio-server. */
export const infra: {
  databaseUrl: string;
  rtpengineNg: { host: string; port: number } | null;
  drachtio: DrachtioServer | null;
  drachtioMissing: string | null;
  isolated: boolean;
} = { databaseUrl: '', rtpengineNg: null, drachtio: null, drachtioMissing: null, isolated: process.env.WASB_ISOLATED === '1' };

let rtpengine: ManagedProcess | null = null;
let adminDb: Sequelize | null = null;
let dbName = '';

function baseDatabaseUrl(): string {
  if (process.env.TEST_DATABASE_URL) return process.env.TEST_DATABASE_URL;
  // In the private network namespace only loopback exists; Postgres is reached through its socket.
  return infra.isolated ? 'postgres://postgres@localhost/test?host=/var/run/postgresql' : 'postgres://postgres@127.0.0.1:5432/test';
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    this.timeout(60000);
    const base = baseDatabaseUrl();
    adminDb = connectDatabase(base);
    dbName = `wasb_test_${process.pid}_${Date.now().toString(36)}`;
    await adminDb.query(`CREATE DATABASE ${dbName}`);
    infra.databaseUrl = withDatabase(base, dbName);
    const db = connectDatabase(infra.databaseUrl);
    await migrate(db);
    await db.close();

    const r = await startRtpengine();
    rtpengine = r.proc;
    infra.rtpengineNg = r.ng;

    const bin = findDrachtio();
    if (bin) {
      infra.drachtio = await startDrachtio(bin);
    } else {
      infra.drachtioMissing = 'drachtio-server not found (set DRACHTIO_BIN or put `drachtio` on PATH)';
      console.log(`\n!!! SIP TESTS SKIPPED: ${infra.drachtioMissing} !!!\n`);
    }
  },
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(30000);
    await infra.drachtio?.proc.stop();
    await rtpengine?.stop();
    if (adminDb) {
      await adminDb.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => undefined);
      await adminDb.close();
    }
  },
};

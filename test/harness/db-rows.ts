import crypto from 'node:crypto';
import { Sequelize } from 'sequelize';
import { connectDatabase } from '../../src/cdr/db';
import { CdrModels, defineModels } from '../../src/cdr/models';
import { infra } from './infra';

let opened: { db: Sequelize; models: CdrModels } | null = null;

function open(): { db: Sequelize; models: CdrModels } {
  if (!opened) {
    const db = connectDatabase(infra.databaseUrl);
    opened = { db, models: defineModels(db) };
  }
  return opened;
}

/**
 * The test process's own models on the test database, to read back what the bridges wrote (in
 * process or not): no bridge's models are shared, so tests never depend on which bridge bound them.
 */
export function rows(): CdrModels {
  return open().models;
}

/** The test process's own pool on the test database (statements the models do not cover). */
export function testDb(): Sequelize {
  return open().db;
}

/** Closes the pool (the run's end). */
export async function closeRows(): Promise<void> {
  const o = opened;
  opened = null;
  await o?.db.close();
}

/**
 * A database of a test file's own on the run's Postgres (for tests that count whole tables or run
 * migrations up and down), dropped with `drop()`.
 */
export async function scratchDatabase(prefix: string): Promise<{ db: Sequelize; drop: () => Promise<void> }> {
  const name = `${prefix}_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;
  const admin = connectDatabase(infra.databaseUrl, 10000);
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(infra.databaseUrl);
  u.pathname = `/${name}`;
  const db = connectDatabase(u.toString(), 10000);
  return {
    db,
    drop: async () => {
      await db.close();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await admin.close();
    },
  };
}

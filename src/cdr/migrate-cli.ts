import { connectDatabase, migrate } from './db';

/** `npm run migrate`: applies pending migrations to DATABASE_URL. */
async function main(): Promise<void> {
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log('usage: npm run migrate\napplies the pending database migrations (dist/migrations) to the database DATABASE_URL names; '
      + 'exit 0 when the schema is up to date, 1 when a migration failed, 2 without DATABASE_URL.');
    return;
  }
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is required');
    process.exit(2);
  }
  const db = connectDatabase(url);
  try {
    const applied = await migrate(db);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error(`migration failed: ${(err as Error).message}`);
  process.exit(1);
});

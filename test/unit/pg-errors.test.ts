import assert from 'node:assert/strict';
import net, { AddressInfo } from 'node:net';
import { connectDatabase } from '../../src/cdr/db';
import { classifyPgError, maskedDatabaseUrl } from '../../src/cdr/pg-errors';

/** A pg error as the server sends it (SQLSTATE in `code`), wrapped the way Sequelize wraps it. */
function sequelizeWrapped(message: string, code: string): Error {
  const pg = Object.assign(new Error(message), { code });
  return Object.assign(new Error(message), { name: 'SequelizeConnectionError', parent: pg, original: pg });
}

/** What pg's client raises on `url`, through Sequelize, as the bridge and the sandbox meet it. */
async function connectError(url: string): Promise<unknown> {
  const db = connectDatabase(url, 3000);
  try {
    await db.authenticate();
    return null;
  } catch (err) {
    return err;
  } finally {
    await db.close();
  }
}

/**
 * A loopback server that speaks just enough of Postgres's protocol to ask for SCRAM-SHA-256, as Debian's
 * default authentication does on 127.0.0.1: the startup message, AuthenticationSASL, the client's first
 * SCRAM message, then AuthenticationSASLContinue. A client without a password fails there.
 */
async function scramServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const message = (type: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  const auth = (code: number, rest: Buffer) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(code);
    return message('R', Buffer.concat([b, rest]));
  };
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let stage = 0;
    s.on('data', () => {
      if (stage === 0) s.write(auth(10, Buffer.from('SCRAM-SHA-256\0\0', 'latin1')));
      else if (stage === 1) s.write(auth(11, Buffer.from('r=abc,s=c2FsdA==,i=4096', 'latin1')));
      stage++;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('Postgres errors, classified (src/cdr/pg-errors.ts)', () => {
  it("a server that wants a password the URL lacks (Debian's default SCRAM): auth, at once, naming Postgres and the URL", async () => {
    const pg = await scramServer();
    try {
      const url = `postgres://postgres@127.0.0.1:${pg.port}/wasb_sandbox`;
      const err = await connectError(url);
      assert.match(String((err as Error).message), /SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string/, 'the failure the issue met');
      const p = classifyPgError(err, url, "the sandbox's DATABASE_URL");
      assert.equal(p.kind, 'auth');
      assert.equal(p.retryable, false);
      assert.match(p.message, /^Postgres refused the sandbox's DATABASE_URL \(postgres:\/\/postgres@127\.0\.0\.1:\d+\/wasb_sandbox\): it needs a password/);
      assert.match(p.message, /pg_hba\.conf/);
    } finally {
      await pg.close();
    }
  });

  it('nothing listening: unreachable, worth waiting for', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const { port } = free.address() as AddressInfo;
    await new Promise((r) => free.close(r));
    const url = `postgres://bridge:s3cret@127.0.0.1:${port}/bridge`;
    const p = classifyPgError(await connectError(url), url);
    assert.equal(p.kind, 'unreachable');
    assert.equal(p.retryable, true);
    assert.match(p.message, new RegExp(`^Postgres is not reachable at 127\\.0\\.0\\.1:${port} \\(DATABASE_URL \\(postgres://bridge:\\*\\*\\*@127\\.0\\.0\\.1:${port}/bridge\\)\\): .*ECONNREFUSED`));
    assert.doesNotMatch(p.message, /s3cret/, 'the password is never shown');
  });

  it("the server's own answers: wrong password and unknown role are auth, a missing database says how to create it", () => {
    const url = 'postgres://bridge:wrong@db.example:5433/bridge';
    const wrong = classifyPgError(sequelizeWrapped('password authentication failed for user "bridge"', '28P01'), url);
    assert.equal(wrong.kind, 'auth');
    assert.match(wrong.message, /^Postgres refused DATABASE_URL \(postgres:\/\/bridge:\*\*\*@db\.example:5433\/bridge\): password authentication failed/);
    assert.equal(classifyPgError(sequelizeWrapped('role "nobody" does not exist', '28000'), url).kind, 'auth');
    const missing = classifyPgError(sequelizeWrapped('database "bridge" does not exist', '3D000'), url);
    assert.equal(missing.kind, 'no-database');
    assert.equal(missing.retryable, false);
    assert.match(missing.message, /^Postgres at db\.example:5433 has no database "bridge" .*createdb -O bridge bridge.*npm run migrate/);
    const starting = classifyPgError(sequelizeWrapped('the database system is starting up', '57P03'), url);
    assert.equal(starting.kind, 'unreachable', 'a server starting up is waited for');
    const other = classifyPgError(sequelizeWrapped('relation "bridge_nodes" does not exist', '42P01'), url);
    assert.equal(other.kind, 'other');
    assert.match(other.message, /^Postgres \(DATABASE_URL .*relation "bridge_nodes" does not exist/);
  });

  it('masks the password of a URL, and shows no unparsable one', () => {
    assert.equal(maskedDatabaseUrl('postgres://u:p%40ss@h:5432/d'), 'postgres://u:***@h:5432/d');
    assert.equal(maskedDatabaseUrl('postgres://u@h/d'), 'postgres://u@h/d');
    assert.equal(maskedDatabaseUrl('not a url with secret'), '(not a URL)');
  });
});

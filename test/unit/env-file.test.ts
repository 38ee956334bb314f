import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { applyEnvFile, envFileFrom, EnvFileError, parseEnvFile } from '../../src/config/env-file';

/** The values a file gives, as an object (the problems must be none). */
function values(text: string, env: Record<string, string | undefined> = {}): Record<string, string> {
  const r = parseEnvFile(text, env);
  assert.deepEqual(r.problems, []);
  return Object.fromEntries(r.values);
}

describe('settings file (ENV_FILE, --env-file)', () => {
  it('reads KEY=VALUE lines, skipping comments and blank lines, as docker compose does', () => {
    assert.deepEqual(values([
      '# a comment',
      '',
      'PUBLIC_IP=203.0.113.7',
      '   HTTP_PORT = 3001   ',
      'export LOG_LEVEL=debug',
      'EMPTY=',
      'HTTP_HOST=127.0.0.1 # the HTTPS front is on this host',
      'HASH_IN_VALUE=a#b',
      'EQUALS=a=b=c',
      '\t# indented comment',
    ].join('\n')), {
      PUBLIC_IP: '203.0.113.7', HTTP_PORT: '3001', LOG_LEVEL: 'debug', EMPTY: '', HTTP_HOST: '127.0.0.1', HASH_IN_VALUE: 'a#b', EQUALS: 'a=b=c',
    });
  });

  it('takes single-quoted values literally and double-quoted ones with escapes', () => {
    assert.deepEqual(values([
      "TRANSFER_REFUSE_PATTERN='^\\+?[0-9]{7,}$'",
      "PASSWORD='p#ss $HOME ${X} \"q\"' # trailing comment",
      'GREETING="line one\\nline two \\"quoted\\" \\$HOME # not a comment"',
      'CRLF=yes\r',
    ].join('\n')), {
      TRANSFER_REFUSE_PATTERN: '^\\+?[0-9]{7,}$',
      PASSWORD: 'p#ss $HOME ${X} "q"',
      GREETING: 'line one\nline two "quoted" $HOME # not a comment',
      CRLF: 'yes',
    });
  });

  it('reads a quoted value over several lines (a PEM key)', () => {
    const v = values('KEY="-----BEGIN-----\nabc\n-----END-----"\nNEXT=1\n');
    assert.equal(v.KEY, '-----BEGIN-----\nabc\n-----END-----');
    assert.equal(v.NEXT, '1');
  });

  it('substitutes ${NAME}, $NAME and defaults from the environment first, then the file\'s earlier lines; $$ is a $', () => {
    assert.deepEqual(values([
      'LOCAL_IP=10.0.0.5',
      'PBX_FACING_IP=${LOCAL_IP}',
      'FROM_ENV=$HOSTISH/x',
      'DEFAULTED=${UNSET:-fallback}',
      'SET_EMPTY_COLON=${EMPTY_ONE:-used}',
      'SET_EMPTY_PLAIN=${EMPTY_ONE-unused}',
      'ALT=${LOCAL_IP:+yes}',
      'NO_ALT=${UNSET:+yes}',
      'DOLLARS=a$$b',
      'UNKNOWN=[$NOPE]',
      "ENV_WINS=${SHADOWED}",
    ].join('\n'), { HOSTISH: 'h', EMPTY_ONE: '', SHADOWED: 'env' }), {
      LOCAL_IP: '10.0.0.5', PBX_FACING_IP: '10.0.0.5', FROM_ENV: 'h/x', DEFAULTED: 'fallback', SET_EMPTY_COLON: 'used', SET_EMPTY_PLAIN: '',
      ALT: 'yes', NO_ALT: '', DOLLARS: 'a$b', UNKNOWN: '[]', ENV_WINS: 'env',
    });
  });

  it('names each bad line and key, never a value', () => {
    const r = parseEnvFile([
      'GOOD=1',
      'this is not a setting',
      '1BAD=x',
      'UNCLOSED="secret-value-1',
      'NEXT=fine',
    ].join('\n'));
    // The unclosed quote swallows the rest of the file: that is reported, as docker compose refuses it too.
    assert.deepEqual(r.problems, ['line 2: not KEY=VALUE', 'line 3: not KEY=VALUE', 'line 4: UNCLOSED\'s value has no closing "']);
    const r2 = parseEnvFile("A='s3cret' trailing\nB=${REQ:?set REQ}\nC=${bad name}\nD=ok");
    assert.deepEqual(r2.problems, [
      'line 1: A has text after its quoted value (quote the whole value)',
      'line 2: B: REQ is required here (set REQ)',
      'line 3: C: "${bad name}" is not a variable reference (write $$ for a literal $, or single-quote the value)',
    ]);
    assert.equal(r2.values.get('D'), 'ok');
    assert.ok(!r.problems.join().includes('secret-value-1') && !r2.problems.join().includes('s3cret'));
  });

  it('reads .env.example itself without a problem (the file it documents the syntax of)', () => {
    const example = fs.readFileSync(path.join(__dirname, '..', '..', '..', '.env.example'), 'utf8');
    const r = parseEnvFile(example);
    assert.deepEqual(r.problems, []);
    assert.equal(r.values.get('PUBLIC_IP'), '');
    assert.equal(r.values.get('HTTP_HOST'), '127.0.0.1');
  });

  it('is named by --env-file (either form) before ENV_FILE', () => {
    assert.equal(envFileFrom(['--env-file', '/a'], { ENV_FILE: '/b' }), '/a');
    assert.equal(envFileFrom(['--env-file=/a'], {}), '/a');
    assert.equal(envFileFrom([], { ENV_FILE: ' /b ' }), '/b');
    assert.equal(envFileFrom([], { ENV_FILE: '' }), null);
    assert.throws(() => envFileFrom(['--env-file'], {}), EnvFileError);
  });

  it('fills the environment where a variable is not set: the real environment wins, even set empty', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-envfile-'));
    try {
      const file = path.join(dir, 'bridge.env');
      fs.writeFileSync(file, [
        'DATABASE_URL=postgres://u:p@127.0.0.1/db', 'YCLOUD_API_KEY=k', 'YCLOUD_WEBHOOK_SECRET=s', 'DRACHTIO_SECRET=from-file',
        'RTPENGINE_NG=127.0.0.1:22222', 'PBX_TARGET=sip:10.0.0.10:5060', 'PUBLIC_IP=203.0.113.7', 'HTTP_PORT=3005', 'LOG_LEVEL=debug',
      ].join('\n'));
      const env: Record<string, string | undefined> = { ENV_FILE: file, DRACHTIO_SECRET: 'from-environment', LOG_LEVEL: '' };
      const r = applyEnvFile([], env);
      assert.equal(r?.file, file);
      assert.deepEqual(r?.fromEnvironment.sort(), ['DRACHTIO_SECRET', 'LOG_LEVEL']);
      assert.equal(env.DRACHTIO_SECRET, 'from-environment');
      assert.equal(env.LOG_LEVEL, '');
      const c = loadConfig(env);
      assert.equal(c.httpPort, 3005);
      assert.equal(c.drachtio.secret, 'from-environment');
      assert.equal(c.logLevel, 'info', 'an empty variable is unset: the default, not the file\'s');
      assert.equal(applyEnvFile([], {}), null, 'no file named: nothing read');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops on a file it cannot read, naming the file', () => {
    assert.throws(() => applyEnvFile(['--env-file', '/nonexistent/bridge.env'], {}), (err: unknown) => {
      assert.ok(err instanceof EnvFileError);
      assert.equal(err.file, '/nonexistent/bridge.env');
      assert.deepEqual(err.problems, ['no such file']);
      return true;
    });
  });
});

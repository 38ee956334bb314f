import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { DigestAuth, DigestOptions } from '../../src/sip/trust';

const CREDS = { username: 'pbx', password: 's3cret-digest', realm: 'wa-sip-bridge' };
const URI = 'sip:6281361905133@127.0.0.1:5060';

function md5(s: string): string {
  return crypto.createHash('md5').update(s).digest('hex');
}

/** The nonce of a WWW-Authenticate header. */
function nonceOf(challenge: string): string {
  return /nonce="([^"]+)"/.exec(challenge)![1]!;
}

/** What a PBX answers a challenge with (RFC 2617, qop=auth unless `qop` is null). */
function authorization(nonce: string, o: { uri?: string; nc?: number; password?: string; qop?: string | null; username?: string } = {}): string {
  const uri = o.uri ?? URI;
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = 'abcdef0123';
  const ha1 = md5(`${o.username ?? CREDS.username}:${CREDS.realm}:${o.password ?? CREDS.password}`);
  const ha2 = md5(`INVITE:${uri}`);
  if (o.qop === null) {
    return `Digest username="${o.username ?? CREDS.username}", realm="${CREDS.realm}", nonce="${nonce}", uri="${uri}", response="${md5(`${ha1}:${nonce}:${ha2}`)}", algorithm=MD5`;
  }
  const response = md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`);
  return `Digest username="${o.username ?? CREDS.username}", realm="${CREDS.realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, cnonce="${cnonce}", qop=auth, nc=${nc}`;
}

describe('SIP digest authentication of agents\' INVITEs', () => {
  let clock: number;
  const auth = (opts: DigestOptions = {}) => new DigestAuth(CREDS, { now: () => clock, ...opts });
  beforeEach(() => {
    clock = 1_800_000_000_000;
  });

  it('accepts the right answer to its own challenge, once', () => {
    const d = auth();
    const nonce = nonceOf(d.challenge());
    assert.equal(d.verify('INVITE', URI, authorization(nonce)), 'ok');
    assert.equal(d.verify('INVITE', URI, authorization(nonce)), 'replayed', 'the same (nonce, nc) again');
  });

  it('wants nc to grow on a nonce it has seen: a higher nc is accepted, a lower or equal one is a replay', () => {
    const d = auth();
    const nonce = nonceOf(d.challenge());
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { nc: 2 })), 'ok');
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { nc: 1 })), 'replayed');
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { nc: 2 })), 'replayed');
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { nc: 3 })), 'ok');
  });

  it('refuses a captured Authorization placed on an INVITE to another number', () => {
    const d = auth();
    const nonce = nonceOf(d.challenge());
    const captured = authorization(nonce);
    assert.equal(d.verify('INVITE', 'sip:6289999999999@127.0.0.1:5060', captured), 'uri-mismatch');
    // and the digest cannot be recomputed for the other URI without the password
    assert.equal(d.verify('INVITE', 'sip:6289999999999@127.0.0.1:5060', authorization(nonce, { uri: 'sip:6289999999999@127.0.0.1:5060', password: 'guess' })), 'wrong-credentials');
  });

  it('requires qop=auth (an RFC 2069 answer without qop is refused even with the right password)', () => {
    const d = auth();
    const nonce = nonceOf(d.challenge());
    assert.match(d.challenge(), /qop="auth"/);
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { qop: null })), 'malformed');
    assert.equal(d.verify('INVITE', URI, authorization(nonce).replace('qop=auth', 'qop=auth-int')), 'malformed');
    assert.equal(d.verify('INVITE', URI, authorization(nonce).replace('algorithm=MD5', 'algorithm=SHA-256')), 'malformed');
  });

  it('refuses a wrong password, a wrong user, and a nonce it did not sign', () => {
    const d = auth();
    const nonce = nonceOf(d.challenge());
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { password: 'wrong' })), 'wrong-credentials');
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { username: 'someone' })), 'wrong-credentials');
    const [t, r] = nonce.split('.');
    assert.equal(d.verify('INVITE', URI, authorization(`${t}.${r}.${'0'.repeat(32)}`)), 'bad-nonce');
    assert.equal(d.verify('INVITE', URI, authorization('1234')), 'bad-nonce');
    assert.equal(d.verify('INVITE', URI, undefined), 'missing');
    assert.equal(d.verify('INVITE', URI, 'Basic cGJ4OnMzY3JldA=='), 'missing');
  });

  it('another node with the same credentials verifies the nonce (no shared state), one with other credentials does not', () => {
    const a = auth();
    const nonce = nonceOf(a.challenge());
    assert.equal(auth().verify('INVITE', URI, authorization(nonce)), 'ok');
    const other = new DigestAuth({ ...CREDS, password: 'another-password' }, { now: () => clock });
    assert.equal(other.verify('INVITE', URI, authorization(nonce, { password: 'another-password' })), 'bad-nonce');
  });

  it('an expired nonce is stale (challenged again with stale=true), also for a nonce seen before', () => {
    const d = auth({ nonceTtlMs: 60_000 });
    const nonce = nonceOf(d.challenge());
    assert.equal(d.verify('INVITE', URI, authorization(nonce)), 'ok');
    clock += 60_001;
    assert.equal(d.verify('INVITE', URI, authorization(nonce, { nc: 2 })), 'stale');
    assert.match(d.challenge(true), /stale=true/);
    assert.doesNotMatch(d.challenge(), /stale/);
    // a nonce "issued" in the future (a forged time cannot be signed; a skewed node's can) is stale too
    const ahead = auth();
    clock += 3_600_000;
    const future = nonceOf(ahead.challenge());
    clock -= 3_600_000;
    assert.equal(d.verify('INVITE', URI, authorization(future)), 'stale');
  });

  it('remembers a bounded number of nonces; a forgotten one is stale, never accepted again', () => {
    const d = auth({ maxNonces: 3 });
    const nonces = [1, 2, 3, 4, 5].map(() => {
      clock += 1;
      return nonceOf(d.challenge());
    });
    for (const n of nonces) assert.equal(d.verify('INVITE', URI, authorization(n)), 'ok');
    assert.equal(d.remembered, 3);
    // The first two were forgotten to make room: replaying them gets a new challenge, not a call.
    assert.equal(d.verify('INVITE', URI, authorization(nonces[0]!)), 'stale');
    assert.equal(d.verify('INVITE', URI, authorization(nonces[1]!, { nc: 7 })), 'stale');
    assert.equal(d.verify('INVITE', URI, authorization(nonces[4]!)), 'replayed');
    // A fresh nonce is still taken.
    clock += 1;
    assert.equal(d.verify('INVITE', URI, authorization(nonceOf(d.challenge()))), 'ok');
    assert.equal(d.remembered, 3);
  });

  it('forgets expired nonces when full instead of newer ones', () => {
    const d = auth({ maxNonces: 2, nonceTtlMs: 1000 });
    const old = nonceOf(d.challenge());
    clock += 500;
    const mid = nonceOf(d.challenge());
    // First used in the other order: the least recently used entry is `mid`, the expired one `old`.
    assert.equal(d.verify('INVITE', URI, authorization(mid)), 'ok');
    assert.equal(d.verify('INVITE', URI, authorization(old)), 'ok');
    clock += 600; // `old` has expired, `mid` has not
    const fresh = nonceOf(d.challenge());
    assert.equal(d.verify('INVITE', URI, authorization(fresh)), 'ok');
    assert.equal(d.verify('INVITE', URI, authorization(mid)), 'replayed', 'mid is still remembered');
  });
});

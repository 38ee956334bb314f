import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A certificate and its key as PEM files (cert: the leaf, then the certificates served with it). */
export interface CertFiles { cert: string; key: string; certPem: string; keyPem: string }

/**
 * A throwaway PKI made with openssl in a temp dir: a root CA (trust it with --ca / NODE_EXTRA_CA_CERTS),
 * an intermediate, and leaves for `hostname` in the shapes the preflight must tell apart.
 */
export interface TestPki {
  dir: string;
  rootCa: string;
  /** Leaf + intermediate, for the hostname: what a correct server sends. */
  good: CertFiles;
  /** The good leaf alone: its intermediate is not sent. */
  leafOnly: CertFiles;
  /** For the hostname, expired in 2020 (intermediate sent). */
  expired: CertFiles;
  /** For the hostname, expiring in 5 days. */
  expiringSoon: CertFiles;
  /** For another name (other.bridge.test). */
  otherName: CertFiles;
  /** Self-signed, for the hostname. */
  selfSigned: CertFiles;
  /** A key that is not the good leaf's. */
  strayKey: string;
  remove(): void;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function makeTestPki(hostname: string): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-pki-'));
  const p = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  fs.mkdirSync(p('newcerts'));
  fs.writeFileSync(p('index.txt'), '');
  fs.writeFileSync(p('serial'), '1000\n');
  // `openssl ca` is the one signer in OpenSSL 3.0 that takes explicit start and end dates (the expired leaf).
  fs.writeFileSync(p('ca.cnf'), `[ ca ]
default_ca = ca_default
[ ca_default ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
`);
  const sign = (issuer: string, csr: string, out: string, ext: string, dates: string[], san = '') => {
    execFileSync('openssl', ['ca', '-batch', '-notext', '-config', p('ca.cnf'), '-cert', p(`${issuer}.pem`), '-keyfile', p(`${issuer}.key`),
      '-in', p(csr), '-out', p(out), '-extensions', ext, ...dates], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SAN: san || 'DNS:unused' } });
  };
  const days = (n: number) => ['-days', String(n)];

  openssl('req', '-x509', ...EC, '-keyout', p('root.key'), '-out', p('root.pem'), '-days', '30', '-subj', '/CN=Preflight Test Root',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...EC, '-keyout', p('int.key'), '-out', p('int.csr'), '-subj', '/CN=Preflight Test Intermediate');
  sign('root', 'int.csr', 'int.pem', 'intermediate', days(30));

  const leaf = (name: string, cn: string, dates: string[]): CertFiles => {
    openssl('req', ...EC, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`);
    sign('int', `${name}.csr`, `${name}.leaf.pem`, 'leaf', dates, `DNS:${cn}`);
    const chain = fs.readFileSync(p(`${name}.leaf.pem`), 'utf8') + fs.readFileSync(p('int.pem'), 'utf8');
    fs.writeFileSync(p(`${name}.pem`), chain);
    return files(p(`${name}.pem`), p(`${name}.key`));
  };
  const good = leaf('good', hostname, days(20));
  const leafOnly = files(p('good.leaf.pem'), p('good.key'));
  const expired = leaf('expired', hostname, ['-startdate', '20200101000000Z', '-enddate', '20200301000000Z']);
  const expiringSoon = leaf('soon', hostname, days(5));
  const otherName = leaf('other', 'other.bridge.test', days(20));
  openssl('req', '-x509', ...EC, '-keyout', p('self.key'), '-out', p('self.pem'), '-days', '20', '-subj', `/CN=${hostname}`,
    '-addext', `subjectAltName=DNS:${hostname}`);
  const selfSigned = files(p('self.pem'), p('self.key'));
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', p('stray.key'));
  return {
    dir, rootCa: p('root.pem'), good, leafOnly, expired, expiringSoon, otherName, selfSigned, strayKey: p('stray.key'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

function files(cert: string, key: string): CertFiles {
  return { cert, key, certPem: fs.readFileSync(cert, 'utf8'), keyPem: fs.readFileSync(key, 'utf8') };
}

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * A private certificate authority for TLS tests (openssl, into `dir`): server certificates for given
 * names, valid now or expired, so a TLS client's checks (chain, dates, names) can be made to fail one
 * at a time.
 */
export interface TestCa { dir: string; caFile: string; caKeyFile: string }
export interface IssuedCert { keyFile: string; certFile: string }

const quiet = { stdio: 'ignore' as const, timeout: 20000 };

export function makeTestCa(dir: string, name = 'wasb test CA'): TestCa {
  const caKeyFile = path.join(dir, 'ca-key.pem');
  const caFile = path.join(dir, 'ca.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', caKeyFile, '-out', caFile], quiet);
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '1000\n');
  fs.writeFileSync(path.join(dir, 'ca.cnf'), [
    '[ ca ]', 'default_ca = test_ca', '[ test_ca ]', `dir = ${dir}`, `database = ${dir}/index.txt`, `new_certs_dir = ${dir}`,
    `serial = ${dir}/serial`, 'default_md = sha256', 'policy = any', 'copy_extensions = copy', 'unique_subject = no',
    '[ any ]', 'commonName = supplied', '',
  ].join('\n'));
  return { dir, caFile, caKeyFile };
}

/**
 * A server certificate signed by `ca` for `names` (DNS names or IP addresses, the first is the CN).
 * `expired`: valid only in January 2020.
 */
export function issueCert(ca: TestCa, file: string, names: string[], o: { expired?: boolean } = {}): IssuedCert {
  const keyFile = path.join(ca.dir, `${file}-key.pem`);
  const csr = path.join(ca.dir, `${file}.csr`);
  const certFile = path.join(ca.dir, `${file}.pem`);
  const san = names.map((n) => (net.isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`,
    '-keyout', keyFile, '-out', csr], quiet);
  const dates = o.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z'] : ['-days', '2'];
  execFileSync('openssl', ['ca', '-batch', '-notext', '-config', path.join(ca.dir, 'ca.cnf'), '-cert', ca.caFile, '-keyfile', ca.caKeyFile,
    ...dates, '-in', csr, '-out', certFile], quiet);
  return { keyFile, certFile };
}

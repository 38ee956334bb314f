import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** Each openssl run is bounded. */
const OPENSSL_TIMEOUT_MS = 20_000;

/** The hostname the sandbox's SIP-mode number gives Meta (`--provider meta-sip`): its TLS certificate's name. */
export const SANDBOX_SIP_HOSTNAME = 'sip.sandbox.test';

export interface SandboxTls {
  /** The CA's certificate (PEM): what the Meta SIP simulator trusts, as Meta trusts public CAs. */
  caFile: string;
  /** The server's key and certificate for `hostname`, signed by the CA (PEM). */
  keyFile: string;
  certFile: string;
  hostname: string;
}

/**
 * A small local CA and a server certificate for the sandbox's drachtio-server TLS contact, made with
 * openssl into `dir`: Meta checks the chain, the dates and the hostname before it sends a call, so the
 * sandbox's Meta simulator is given the CA to trust and checks the rest as Meta does. Valid 30 days;
 * made afresh at each start.
 */
export async function makeSandboxTls(dir: string, hostname = SANDBOX_SIP_HOSTNAME): Promise<SandboxTls> {
  const caKeyFile = path.join(dir, 'sandbox-ca-key.pem');
  const caFile = path.join(dir, 'sandbox-ca.pem');
  const keyFile = path.join(dir, 'sip-key.pem');
  const csr = path.join(dir, 'sip.csr');
  const certFile = path.join(dir, 'sip-cert.pem');
  const ext = path.join(dir, 'sip.ext');
  const o = { timeout: OPENSSL_TIMEOUT_MS };
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=wa-sip-bridge sandbox CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', caKeyFile, '-out', caFile], o);
  await run('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${hostname}`, '-keyout', keyFile, '-out', csr], o);
  fs.writeFileSync(ext, `subjectAltName=DNS:${hostname}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKeyFile, '-CAcreateserial', '-days', '30', '-sha256',
    '-extfile', ext, '-out', certFile], o);
  return { caFile, keyFile, certFile, hostname };
}

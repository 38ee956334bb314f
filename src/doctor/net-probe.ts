import dns from 'node:dns/promises';
import net from 'node:net';
import { errorCode, messageOf } from './check';

/**
 * Why an HTTP(S) address could not be reached, in the network's terms: the name does not resolve, the
 * connection is refused, nothing answers (a firewall dropping it). fetch() says only "fetch failed";
 * an operator needs to know which of these to fix.
 */
export async function whyUnreachable(url: string, timeoutMs: number): Promise<string> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  let address = host;
  if (net.isIP(host) === 0) {
    try {
      address = (await withDeadline(dns.lookup(host), timeoutMs, 'DNS')).address;
    } catch (err) {
      const code = errorCode(err);
      return code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENODATA'
        ? `network failure: ${host} does not resolve (${code}): check the name and this host's DNS`
        : `network failure: resolving ${host}: ${messageOf(err)}`;
    }
  }
  const at = `${host === address ? address : `${host} (${address})`} port ${port}`;
  const outcome = await tcpConnect(address, port, timeoutMs);
  switch (outcome) {
    case 'open': return `network failure after connecting to ${at} (the connection was cut: a proxy or TLS problem?)`;
    case 'timeout': return `network failure: ${at} does not answer within ${timeoutMs} ms (a firewall dropping it, or no route)`;
    default: return `network failure: ${at}: ${outcome === 'ECONNREFUSED' ? 'connection refused (nothing listens there)' : outcome}`;
  }
}

/** Connects and closes at once: 'open', 'timeout', or the error code. */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (outcome: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err) => done(errorCode(err) ?? messageOf(err)));
  });
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

import { MetaSipSettings } from '../providers/meta/client';
import { CheckResult, failed, ok, warn } from './report';

/** The bridge's side of a number in SIP mode, as the preflight checks it against Meta's. */
export interface LocalSip {
  hostname: string;
  port: number;
  /** The SIP password the bridge holds for the number (NUMBERS_FILE's `sip.password`); null: none given. */
  password: string | null;
}

/** The bridge holds a SIP password for the number: without it, Meta's 407 cannot be answered nor Meta's INVITEs challenged. */
export function checkPasswordPresent(local: LocalSip, where: string): CheckResult {
  return local.password
    ? ok('SIP password', `present (${where})`)
    : failed('SIP password', `none for this number (${where}): read it with \`npm run settings -- sip-password --phone <number>\` and give it to the bridge`);
}

/**
 * The bridge's SIP side against Meta's settings (read with include_sip_credentials): SIP enabled, the same
 * password, and Meta's SIP server the bridge's hostname and port. The hostname is also the From domain of
 * the bridge's INVITEs: Meta answers 403 "SIP server ... does not match" when the two differ.
 */
export function checkAgainstMeta(local: LocalSip, meta: MetaSipSettings, phone: string): CheckResult[] {
  const results: CheckResult[] = [];
  results.push(meta.status === 'ENABLED'
    ? ok('Meta: SIP enabled', 'sip.status ENABLED')
    : warn('Meta: SIP enabled', `sip.status is ${meta.status ?? 'not set'}: Meta sends this number's calls by webhook until \`npm run settings -- set --phone ${phone} --sip ENABLED\``));
  if (!meta.server) {
    results.push(failed('Meta: SIP server / From domain', `Meta has no SIP server for the number: \`npm run settings -- set --phone ${phone} --sip-host ${local.hostname} --sip-port ${local.port}\``));
  } else {
    const same = meta.server.hostname.toLowerCase() === local.hostname.toLowerCase() && meta.server.port === local.port;
    results.push(same
      ? ok('Meta: SIP server / From domain', `${meta.server.hostname}:${meta.server.port}, the bridge's hostname and port`)
      : failed('Meta: SIP server / From domain', `Meta sends to ${meta.server.hostname}:${meta.server.port} but the bridge is ${local.hostname}:${local.port}: `
        + `the bridge's From domain would not match (Meta answers 403). Set one to the other: \`npm run settings -- set --phone ${phone} --sip-host ${local.hostname} --sip-port ${local.port}\``));
  }
  if (meta.password === null) results.push(failed('Meta: SIP password', 'Meta gave no SIP password (is SIP enabled for the number?)'));
  else if (local.password === null) results.push(failed('Meta: SIP password', 'Meta has one, the bridge none (see SIP password above)'));
  else if (meta.password !== local.password) {
    results.push(failed('Meta: SIP password', `the bridge's differs from Meta's (changed at Meta?): read it again with \`npm run settings -- sip-password --phone ${phone}\``));
  } else results.push(ok('Meta: SIP password', 'the bridge\'s equals Meta\'s'));
  return results;
}

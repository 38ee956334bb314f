import { performance } from 'node:perf_hooks';
import { runCommand } from '../config/env-file';
import { Config, ConfigError, loadConfig } from '../config';
import { NumberRoute } from '../calls/numbers-port';
import { createLogger } from '../log';
import { loadNumbers, Numbers, NumbersFileError } from '../numbers';
import { checkAgainstMeta, checkPasswordPresent, LocalSip } from '../preflight/meta-settings';
import { allPassed, CheckResult, formatSection, skipped, warn } from '../preflight/report';
import { trustStore } from '../preflight/certificates';
import { checkCertificateFiles, checkSipEndpoint, ProbeOptions } from '../preflight/sip-target';
import { DEFAULT_SIP_PORT, readsSipSettings } from '../providers/meta/client';
import { normalizeE164 } from '../util/numbers';

const USAGE = `usage: npm run preflight -- [--phone +E164] [--connect host:port] [--ca file.pem] [--timeout-ms N]
                            [--hostname NAME [--port N] [--password-env VARIABLE]]
checks, for each number in Meta's SIP mode (or the one --phone names), what Meta checks before its first
call: the hostname resolves; the TLS port answers a handshake without ALPN and without asking for a client
certificate; the certificate chain verifies, is sent whole, is in its dates and covers the hostname; SIP
answers an OPTIONS; the bridge has the number's SIP password, equal to Meta's, and Meta's SIP server is the
bridge's hostname and port (the From domain); META_SIP_TLS_CERT_FILE / _KEY_FILE when set.
--connect probes another address than the hostname's (the name checks stay on the hostname); --ca adds a
CA to the public ones (as NODE_EXTRA_CA_CERTS does); --hostname/--port/--password-env name the SIP side
when the numbers file does not. Exit 0 when nothing failed, 1 when a check failed, 2 on bad usage.`;

interface Args {
  phone: string | null;
  connect: { host: string; port: number } | null;
  ca: string[];
  timeoutMs: number;
  hostname: string | null;
  port: number | null;
  passwordEnv: string | null;
}

/** One number to check: its SIP side, and (when known) its route for the Graph checks. */
interface Target {
  title: string;
  phone: string | null;
  local: LocalSip;
  passwordFrom: string;
  route: NumberRoute | null;
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const args = parseArgs(argv);
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (typeof args === 'string') return usage(args);

  let config: Config | null = null;
  let numbers: Numbers | null = null;
  let configProblem: string | null = null;
  try {
    config = loadConfig(env);
    numbers = loadNumbers(config, undefined, createLogger('silent'), env);
  } catch (err) {
    if (!(err instanceof ConfigError || err instanceof NumbersFileError)) throw err;
    if (args.hostname === null) return usage(err.message);
    // Its first problem is enough to say why Meta's side goes unchecked.
    configProblem = err.message.split('\n')[0]!.split('; ')[0]!;
  }

  const targets = chooseTargets(args, numbers, env);
  if (typeof targets === 'string') return usage(targets);

  const started = performance.now();
  const extraCa = [...(env.NODE_EXTRA_CA_CERTS ? [env.NODE_EXTRA_CA_CERTS] : []), ...args.ca];
  let probe: ProbeOptions;
  try {
    probe = { trust: trustStore(extraCa), timeoutMs: args.timeoutMs, now: new Date(), openssl: 'openssl' };
  } catch (err) {
    return usage(`a CA file cannot be read: ${(err as Error).message}`);
  }
  const all: CheckResult[] = [];
  for (const t of targets) {
    const results = [
      ...await checkSipEndpoint({ hostname: t.local.hostname, port: t.local.port, connect: args.connect }, probe),
      checkPasswordPresent(t.local, t.passwordFrom),
      ...await graphChecks(t, numbers, configProblem),
      ...fileChecks(config, t.local.hostname, probe),
    ];
    all.push(...results);
    console.log(formatSection(t.title, results));
  }
  const failures = all.filter((r) => r.status === 'fail').length;
  const warnings = all.filter((r) => r.status === 'warn').length;
  const took = ((performance.now() - started) / 1000).toFixed(1);
  console.log(allPassed(all)
    ? `preflight passed: ${all.length} checks, ${warnings} warning(s), ${took} s`
    : `preflight FAILED: ${failures} of ${all.length} checks failed (${warnings} warning(s)), ${took} s`);
  return allPassed(all) ? 0 : 1;
}

function parseArgs(argv: string[]): Args | string | 'help' {
  const a: Args = { phone: null, connect: null, ca: [], timeoutMs: 5000, hostname: null, port: null, passwordEnv: null };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    if (flag === '--help' || flag === '-h' || flag === 'help') return 'help';
    const value = argv[i + 1];
    if (value === undefined) return `${flag} needs a value`;
    switch (flag) {
      case '--phone':
        a.phone = value;
        break;
      case '--connect': {
        const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(value);
        if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return `--connect must be host:port (got "${value}")`;
        a.connect = { host: m[1]!, port: Number(m[2]) };
        break;
      }
      case '--ca':
        a.ca.push(value);
        break;
      case '--timeout-ms':
        if (!/^\d+$/.test(value) || Number(value) < 100 || Number(value) > 60000) return '--timeout-ms must be 100-60000';
        a.timeoutMs = Number(value);
        break;
      case '--hostname':
        a.hostname = value;
        break;
      case '--port':
        if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65535) return `--port must be a port number (got "${value}")`;
        a.port = Number(value);
        break;
      case '--password-env':
        a.passwordEnv = value;
        break;
      default:
        return `unknown option ${flag}`;
    }
  }
  if (a.hostname === null && (a.port !== null || a.passwordEnv !== null)) return '--port and --password-env go with --hostname';
  return a;
}

/** The numbers to check: the one the flags describe, the one --phone names, or every number in SIP mode. */
function chooseTargets(a: Args, numbers: Numbers | null, env: NodeJS.ProcessEnv): Target[] | string {
  const phone = a.phone === null ? null : normalizeE164(a.phone);
  if (a.phone !== null && !phone) return `--phone must be an E.164 number (got "${a.phone}")`;
  if (a.hostname !== null) {
    const route = phone ? numbers?.byNumber(phone) ?? null : numbers?.agentDefault() ?? null;
    const password = a.passwordEnv ? env[a.passwordEnv]?.trim() || null : route?.sip?.password ?? null;
    const port = a.port ?? DEFAULT_SIP_PORT;
    return [{
      title: `${route ? `${route.line.number} (${route.name})` : phone ?? 'SIP server'}: ${a.hostname}:${port}`,
      phone: route?.line.number ?? phone,
      local: { hostname: a.hostname, port, password },
      passwordFrom: a.passwordEnv ? `$${a.passwordEnv}` : 'the numbers file',
      route,
    }];
  }
  if (!numbers) return 'no configuration';
  let routes: NumberRoute[];
  if (phone) {
    const route = numbers.byNumber(phone);
    if (!route) return `${phone} is not one of this bridge's numbers (NUMBERS_FILE or WA_BUSINESS_NUMBER)`;
    if (!route.sip) return `${phone} is not in Meta's SIP mode (its numbers-file entry has no sip: section); or name the SIP side with --hostname`;
    routes = [route];
  } else {
    routes = numbers.all().filter((r) => r.sip !== null);
    if (routes.length === 0) return 'no number is in Meta\'s SIP mode (a numbers-file entry with a sip: section); or name the SIP side with --hostname';
  }
  return routes.map((r) => ({
    title: `${r.line.number} (${r.name}): ${r.sip!.hostname}:${r.sip!.port}`,
    phone: r.line.number,
    local: { hostname: r.sip!.hostname, port: r.sip!.port, password: r.sip!.password || null },
    passwordFrom: 'the numbers file',
    route: r,
  }));
}

/** Meta's side (Graph, include_sip_credentials) against the bridge's: skipped with the reason when it cannot be read. */
async function graphChecks(t: Target, numbers: Numbers | null, configProblem: string | null): Promise<CheckResult[]> {
  const check = 'Meta: settings';
  if (!t.route) return [skipped(check, configProblem ? `not read: the bridge's configuration does not load here (${configProblem}); run with the bridge's environment` : 'not read: no number of this bridge named (--phone)')];
  const reader = [t.route.provider, numbers?.account(t.route.providerName)].find((p) => p && readsSipSettings(p));
  if (!reader || !readsSipSettings(reader)) return [skipped(check, `not read: ${t.route.line.number} is on a ${t.route.providerKind} account, not Meta's`)];
  try {
    return checkAgainstMeta(t.local, await reader.sipSettings(t.route.line), t.route.line.number);
  } catch (err) {
    return [warn(check, `Graph could not be read (${(err as Error).message}): Meta's password and SIP server are unchecked`)];
  }
}

function fileChecks(config: Config | null, hostname: string, probe: ProbeOptions): CheckResult[] {
  const files = config?.meta.sipTls;
  if (!files?.certFile) return [skipped('certificate file', 'META_SIP_TLS_CERT_FILE not set: only the served certificate is checked')];
  return checkCertificateFiles(files.certFile, files.keyFile, hostname, probe);
}

function usage(message: string): number {
  console.error(`${message}\n${USAGE}`);
  return 2;
}

runCommand('preflight', () => main(process.argv.slice(2), process.env));

import { loadConfig, ConfigError } from '../config';
import { runCommand } from '../config/env-file';
import { createLogger } from '../log';
import { normalizeE164 } from '../util/numbers';
import { ProviderError, WhatsAppProvider } from '../calls/provider-port';
import { CallingSettingsChange, SipSettingsChange, validateSettingsChange } from '../calls/calling-settings';
import { NumberRoute } from '../calls/numbers-port';
import { loadNumbers, NumbersFileError } from '../numbers';
import { readsSipSettings } from '../providers/meta/client';
import { providerErrorText } from '../providers/error-text';

const USAGE = `usage: npm run settings -- get [--phone +E164]
       npm run settings -- set [--phone +E164] [--status ENABLED|DISABLED] [--icon-visibility DEFAULT|DISABLE_ALL]
                               [--callback-permission ENABLED|DISABLED] [--call-hours '<json>']
                               [--sip ENABLED|DISABLED] [--sip-host HOSTNAME] [--sip-port PORT] [--srtp DTLS|SDES]
                               [--g711 on|off] [--sip-webhooks ENABLED|DISABLED]
       npm run settings -- sip-password [--phone +E164]
reads the bridge's own settings (the environment, and NUMBERS_FILE when set): --phone picks the business
number (default: the agents' default number), whose provider account (YCloud or Meta) is asked.
The --sip* options, --srtp and --g711 set Meta's native SIP (Meta numbers only): --sip ENABLED makes the
number SIP-only, with the one SIP server Meta sends to (--sip-host, --sip-port, default 5061; the bridge's TLS
certificate must cover the host). sip-password prints Meta's SIP password for the number (stdout), and on
stderr how the numbers file refers to it.`;

const FLAGS: Record<string, Exclude<keyof CallingSettingsChange, 'sip'>> = {
  '--status': 'status',
  '--icon-visibility': 'iconVisibility',
  '--callback-permission': 'callbackPermissionStatus',
  '--call-hours': 'callHours',
};

const SIP_FLAGS: Record<string, keyof SipSettingsChange> = {
  '--sip': 'status',
  '--sip-host': 'hostname',
  '--sip-port': 'port',
  '--srtp': 'srtpKeyExchange',
  '--g711': 'g711',
  '--sip-webhooks': 'webhookDelivery',
};

/** Reads or changes a business number's calling settings at its provider, so nobody needs curl. */
async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (cmd !== 'get' && cmd !== 'set' && cmd !== 'sip-password') return fail(USAGE);
  let phone: string | null = null;
  const change: Record<string, unknown> = {};
  const sip: Record<string, unknown> = {};
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      return 0;
    }
    if (value === undefined) return fail(`${flag} needs a value\n${USAGE}`);
    if (flag === '--phone') phone = value;
    else if (cmd === 'set' && FLAGS[flag]) {
      try {
        change[FLAGS[flag]!] = flag === '--call-hours' ? JSON.parse(value) : value.toUpperCase();
      } catch {
        return fail('--call-hours must be JSON');
      }
    } else if (cmd === 'set' && SIP_FLAGS[flag]) {
      const parsed = sipValue(flag, value);
      if (parsed === undefined) return fail(`${flag}: "${value}" is not ${flag === '--g711' ? 'on or off' : 'a port number'}`);
      sip[SIP_FLAGS[flag]!] = parsed;
    } else return fail(`unknown option ${flag}\n${USAGE}`);
  }
  if (Object.keys(sip).length) change.sip = sip;
  let numbers;
  try {
    numbers = loadNumbers(loadConfig(process.env), undefined, createLogger('silent'));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof NumbersFileError) return fail(`${err.message}\n${USAGE}`);
    throw err;
  }
  const phoneNumber = phone === null ? (numbers.agentDefault()?.line.number || null) : normalizeE164(phone);
  if (!phoneNumber) return fail(`--phone (or a default business number) must be an E.164 number\n${USAGE}`);
  const route = numbers.byNumber(phoneNumber);
  if (!route) return fail(`${phoneNumber} is not one of this bridge's numbers (NUMBERS_FILE or WA_BUSINESS_NUMBER)`);
  const line = { ...route.line, number: phoneNumber };
  if (cmd === 'sip-password') return sipPassword(route, numbers.account(route.providerName), line);
  if (cmd === 'set') {
    const problems = validateSettingsChange(change);
    if (problems.length) return fail(problems.join('\n'));
    if (change.sip !== undefined && route.providerKind === 'ycloud') {
      return fail(`${phoneNumber} is carried by YCloud (account "${route.providerName}"), which has no SIP mode: Meta's native SIP is set on a Meta number`);
    }
    await route.provider.updateCallingSettings(line, change as CallingSettingsChange);
  }
  const current = await route.provider.getCallingSettings(line);
  console.log(JSON.stringify(current, null, 2));
  return 0;
}

/** A SIP flag's value: upper-cased words, a port number, on/off as a boolean; undefined when unreadable. */
function sipValue(flag: string, value: string): string | number | boolean | undefined {
  if (flag === '--sip-host') return value;
  if (flag === '--sip-port') return /^\d{1,5}$/.test(value) ? Number(value) : undefined;
  if (flag === '--g711') return ({ on: true, off: false } as Record<string, boolean>)[value.toLowerCase()];
  return value.toUpperCase();
}

/** Prints Meta's SIP password (stdout, alone, for a secret store) and how NUMBERS_FILE refers to it (stderr). */
async function sipPassword(route: NumberRoute, account: WhatsAppProvider | null, line: NumberRoute['line']): Promise<number> {
  // The route's adapter, or (a number in SIP mode) its account's Graph client.
  const graph = [route.provider, account].find((p) => p !== null && readsSipSettings(p));
  if (!graph || !readsSipSettings(graph)) {
    return fail(`${line.number} is carried by ${route.providerKind} (account "${route.providerName}"): only Meta numbers have a SIP password`);
  }
  const settings = await graph.sipSettings(line);
  if (settings.password === null) {
    return fail(`Meta gave no SIP password for ${line.number} (sip.status ${settings.status ?? 'unset'}, server ${settings.server ? `${settings.server.hostname}:${settings.server.port}` : 'none'}): `
      + 'enable SIP first: npm run settings -- set --phone ' + line.number + ' --sip ENABLED --sip-host <hostname>');
  }
  const variable = `META_SIP_PASSWORD_${route.name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;
  console.log(settings.password);
  console.error([
    `Meta's SIP password for ${line.number} (number "${route.name}"). Keep it out of the numbers file: put it in the bridge's`,
    `environment (or a secret file) and refer to it from the number's entry in NUMBERS_FILE:`,
    `  sip: { hostname: ${settings.server?.hostname ?? '<hostname>'}, port: ${settings.server?.port ?? 5061}, password: { env: ${variable} } }`,
    `  (or password: { file: /run/secrets/${variable.toLowerCase().replace(/_/g, '-')} })`,
  ].join('\n'));
  return 0;
}

function fail(message: string): number {
  console.error(message);
  return 2;
}

runCommand('settings', () => main(process.argv.slice(2)), (err) => (err instanceof ProviderError ? providerErrorText(err) : `failed: ${(err as Error).message}`));

import { loadConfig, ConfigError } from '../config';
import { createLogger } from '../log';
import { normalizeE164 } from '../util/numbers';
import { ProviderError } from '../calls/provider-port';
import { CallingSettingsChange, validateSettingsChange } from '../calls/calling-settings';
import { loadNumbers, NumbersFileError } from '../numbers';

const USAGE = `usage: npm run settings -- get [--phone +E164]
       npm run settings -- set [--phone +E164] [--status ENABLED|DISABLED] [--icon-visibility DEFAULT|DISABLE_ALL]
                               [--callback-permission ENABLED|DISABLED] [--call-hours '<json>']
reads the bridge's own settings (the environment, and NUMBERS_FILE when set): --phone picks the business
number (default: the agents' default number), whose provider account (YCloud or Meta) is asked`;

const FLAGS: Record<string, keyof CallingSettingsChange> = {
  '--status': 'status',
  '--icon-visibility': 'iconVisibility',
  '--callback-permission': 'callbackPermissionStatus',
  '--call-hours': 'callHours',
};

/** Reads or changes a business number's calling settings at its provider, so nobody needs curl. */
async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (cmd !== 'get' && cmd !== 'set') return fail(USAGE);
  let phone: string | null = null;
  const change: Record<string, unknown> = {};
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    if (value === undefined) return fail(`${flag} needs a value\n${USAGE}`);
    if (flag === '--phone') phone = value;
    else if (FLAGS[flag]) {
      try {
        change[FLAGS[flag]!] = flag === '--call-hours' ? JSON.parse(value) : value.toUpperCase();
      } catch {
        return fail('--call-hours must be JSON');
      }
    } else return fail(`unknown option ${flag}\n${USAGE}`);
  }
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
  if (cmd === 'set') {
    const problems = validateSettingsChange(change);
    if (problems.length) return fail(problems.join('\n'));
    await route.provider.updateCallingSettings(line, change as CallingSettingsChange);
  }
  const current = await route.provider.getCallingSettings(line);
  console.log(JSON.stringify(current, null, 2));
  return 0;
}

function fail(message: string): number {
  console.error(message);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ProviderError) {
      const answered = err.httpStatus === null ? (err.timedOut ? 'did not answer in time' : 'could not be reached') : `refused (HTTP ${err.httpStatus})`;
      console.error(`${err.provider} ${answered}: ${err.message}${err.whatsappCode ? ` (WhatsApp error ${err.whatsappCode})` : ''}`);
    } else console.error(`failed: ${(err as Error).message}`);
    process.exit(1);
  },
);

import { normalizeE164 } from '../util/numbers';
import { YCloudClient, YCloudError } from '../providers/ycloud/client';
import { CallingSettingsChange, settingsBody, validateSettingsChange } from '../providers/ycloud/settings';

const USAGE = `usage: npm run settings -- get [--phone +E164]
       npm run settings -- set [--phone +E164] [--status ENABLED|DISABLED] [--icon-visibility DEFAULT|DISABLE_ALL]
                               [--callback-permission ENABLED|DISABLED] [--call-hours '<json>']
reads YCLOUD_API_KEY, YCLOUD_API_BASE_URL, WA_WABA_ID and WA_BUSINESS_NUMBER (the default --phone)`;

const FLAGS: Record<string, keyof CallingSettingsChange> = {
  '--status': 'status',
  '--icon-visibility': 'iconVisibility',
  '--callback-permission': 'callbackPermissionStatus',
  '--call-hours': 'callHours',
};

/** Reads or changes the business number's calling settings at YCloud, so nobody needs curl. */
async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== 'get' && cmd !== 'set') return fail(USAGE);
  const env = process.env;
  const missing = ['YCLOUD_API_KEY', 'WA_WABA_ID'].filter((k) => !env[k]);
  if (missing.length) return fail(`missing settings: ${missing.join(', ')}\n${USAGE}`);
  let phone = env.WA_BUSINESS_NUMBER ?? '';
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
  const phoneNumber = normalizeE164(phone);
  if (!phoneNumber) return fail(`--phone (or WA_BUSINESS_NUMBER) must be an E.164 number\n${USAGE}`);
  const client = new YCloudClient({ baseUrl: (env.YCLOUD_API_BASE_URL ?? 'https://api.ycloud.com/v2').replace(/\/+$/, ''), apiKey: env.YCLOUD_API_KEY!, timeoutMs: 10000 });
  const line = { number: phoneNumber, phoneId: env.WA_PHONE_ID ?? null, wabaId: env.WA_WABA_ID! };
  if (cmd === 'set') {
    const problems = validateSettingsChange(change);
    if (problems.length) return fail(problems.join('\n'));
    await client.updateCallingSettings(line, settingsBody(change as CallingSettingsChange));
  }
  const current = await client.getCallingSettings(line);
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
    const e = err as YCloudError;
    console.error(`YCloud refused: ${e.message}${e.whatsappCode ? ` (WhatsApp error ${e.whatsappCode})` : ''}`);
    process.exit(1);
  },
);

import { CheckResult, failed, ok } from '../preflight/report';
import { bounded, Section } from './check';
import { checkClock } from './clock';
import { DoctorConfig, loadDoctorConfig } from './configuration';
import { checkDatabase } from './database';
import { checkAccount } from './providers';
import { checkPublicIp, Interfaces } from './public-ip';
import { checkRtpengine } from './rtpengine';
import { checkSecrets } from './secrets';
import { checkSip } from './sip';
import { checkWebhook } from './webhook';

type Env = Record<string, string | undefined>;

export interface DoctorOptions {
  env: Env;
  /** Bound on each wait on the network; a check as a whole gets CHECK_WAITS times it. */
  timeoutMs: number;
  /** --webhook-url: overrides PUBLIC_WEBHOOK_URL. */
  webhookUrl: string | null;
  /** Trusted CAs for the webhook's certificate (PEM: the public ones, NODE_EXTRA_CA_CERTS, --ca). */
  ca: string[];
  /** This host's interfaces (tests); default os.networkInterfaces(). */
  interfaces?: Interfaces;
}

/** A check makes a few waits in a row (rtpengine: ping and two offers); its whole is bounded by this many timeouts. */
export const CHECK_WAITS = 4;

/**
 * Every check a first real call needs, from the bridge's own configuration, in the order to fix them:
 * the provider accounts (credentials, calling enabled, signing secrets), the webhook URL, PUBLIC_IP,
 * rtpengine, drachtio-server, the PBX, Postgres, the clock. They run at once, each bounded and on its
 * own (one failing stops none of the others); a configuration the bridge would refuse is the one
 * finding, since the rest needs it.
 */
export async function runDoctor(o: DoctorOptions): Promise<Section[]> {
  const loaded = loadDoctorConfig(o.env);
  if (!loaded.ok) {
    return [{ title: 'configuration', results: loaded.problems.map((p) => failed('settings', `${p} (the bridge will not start: fix it, then run the doctor again)`)) }];
  }
  const d = loaded.value;
  const t = o.timeoutMs;
  const limit = t * CHECK_WAITS;
  const c = d.config;
  const fromFile = c.numbers.file !== null;
  const source = c.numbers.file === null ? `the environment (WA_PROVIDER=${c.numbers.provider})` : `NUMBERS_FILE ${c.numbers.file}`;
  const sip = bounded('drachtio-server', limit, async () => {
    const r = await checkSip({
      drachtio: c.drachtio,
      pbxTargets: d.numbers.numbers.map((n) => ({ number: n.number ?? n.name, targets: n.pbx.targets })),
      metaSipPort: d.numbers.numbers.some((n) => n.sip) ? c.metaSip.listenPort : null,
      timeoutMs: t,
    });
    // Both sections from one connection: the PBX's travel as the drachtio one's second half.
    return [...r.drachtio, ...r.pbx.map((x) => ({ ...x, check: `pbx:${x.check}` }))];
  });
  const sections: Array<{ title: string; run: Promise<CheckResult[]> }> = [
    { title: 'configuration', run: Promise.resolve([ok('settings', `read as the bridge reads them: ${d.numbers.numbers.length} number(s) on ${d.numbers.accounts.length} account(s), from ${source}`)]) },
    ...d.numbers.accounts.map((a) => ({
      title: `provider account "${a.name}" (${a.kind}, ${a.apiBaseUrl})`,
      run: bounded('credentials', limit, async () => [...await checkAccount(a, d.numbers.numbers, t, fromFile), ...checkSecrets(a, fromFile)]),
    })),
    { title: 'webhook URL', run: bounded('webhook URL', limit, () => checkWebhook({ url: webhookUrl(o, d), accounts: d.numbers.accounts, ca: o.ca, timeoutMs: t })) },
    { title: 'this host', run: Promise.resolve(checkPublicIp(c.publicIp, d.allowPrivatePublicIp, o.interfaces)) },
    ...c.rtpengine.ng.map((ng) => ({
      title: `rtpengine ${ng.host}:${ng.port}`,
      run: bounded('ng ping', limit, () => checkRtpengine({ ng, interfaces: c.rtpengine.interfaces, publicIp: c.publicIp, timeoutMs: t })),
    })),
    { title: `drachtio-server ${c.drachtio.host}:${c.drachtio.port}`, run: sip.then((r) => r.filter((x) => !x.check.startsWith('pbx:'))) },
    { title: 'PBX targets (OPTIONS through drachtio-server)', run: sip.then(pbxPart) },
    { title: 'Postgres', run: bounded('connection', limit, () => checkDatabase(c.databaseUrl, t)) },
    { title: 'clock', run: bounded('clock', limit, () => checkClock({ urls: d.numbers.accounts.map((a) => a.apiBaseUrl), timeoutMs: t })) },
  ];
  return Promise.all(sections.map(async (s) => ({ title: s.title, results: await s.run })));
}

/** The PBX lines of the SIP check; when the whole check failed (timed out), that is said of the PBX too. */
function pbxPart(results: CheckResult[]): CheckResult[] {
  const mine = results.filter((x) => x.check.startsWith('pbx:')).map((x) => ({ ...x, check: x.check.slice(4) }));
  return mine.length ? mine : [failed('OPTIONS', 'not sent: the drachtio-server check did not finish')];
}

/** --webhook-url, else PUBLIC_WEBHOOK_URL, else https://WEBHOOK_DOMAIN (docker compose's Caddy front). */
function webhookUrl(o: DoctorOptions, d: DoctorConfig): { value: string; from: string } | null {
  if (o.webhookUrl) return { value: o.webhookUrl, from: '--webhook-url' };
  if (d.config.publicWebhookUrl) return { value: d.config.publicWebhookUrl, from: 'PUBLIC_WEBHOOK_URL' };
  const domain = o.env.WEBHOOK_DOMAIN?.trim();
  return domain ? { value: `https://${domain}`, from: 'https://WEBHOOK_DOMAIN' } : null;
}

import { performance } from 'node:perf_hooks';
import { runCommand } from '../config/env-file';
import { CHECK_WAITS, runDoctor } from '../doctor/run';
import { trustStore } from '../preflight/certificates';
import { allPassed, formatSection } from '../preflight/report';

const USAGE = `usage: npm run doctor -- [--webhook-url https://NAME] [--ca file.pem] [--timeout-ms N]
the go-live preflight: from the bridge's configuration (its environment, and NUMBERS_FILE), checks what a
first real call needs, in the order to fix it: each provider account's credentials (an authenticated read of
each number's calling settings), calling enabled on each number, the signing secrets, the webhook URL over
HTTPS (PUBLIC_WEBHOOK_URL, else https://WEBHOOK_DOMAIN: it resolves, its certificate verifies, it reaches
this bridge), PUBLIC_IP, rtpengine (ng, its two interfaces, what it gives WhatsApp), drachtio-server (the
secret, its SIP contacts), each PBX target's answer to OPTIONS, Postgres (credentials, database, migrations)
and the clock. One line per check: ok, WARN (works, but look), FAIL (a call would break: what to do), skip.
--webhook-url overrides PUBLIC_WEBHOOK_URL; --ca trusts another CA for its certificate (as NODE_EXTRA_CA_CERTS
does); --timeout-ms bounds each wait on the network (default 5000; a check as a whole ${CHECK_WAITS} times it).
Exit 0 when nothing failed, 1 when a check failed, 2 on bad usage.`;

interface Args { webhookUrl: string | null; ca: string[]; timeoutMs: number }

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const args = parseArgs(argv);
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (typeof args === 'string') return usage(args);
  let ca: string[];
  try {
    ca = trustStore([...(env.NODE_EXTRA_CA_CERTS ? [env.NODE_EXTRA_CA_CERTS] : []), ...args.ca]).pem;
  } catch (err) {
    return usage(`a CA file cannot be read: ${(err as Error).message}`);
  }
  const started = performance.now();
  const sections = await runDoctor({ env, timeoutMs: args.timeoutMs, webhookUrl: args.webhookUrl, ca });
  for (const s of sections) console.log(formatSection(s.title, s.results));
  const all = sections.flatMap((s) => s.results);
  const failures = all.filter((r) => r.status === 'fail').length;
  const warnings = all.filter((r) => r.status === 'warn').length;
  const took = ((performance.now() - started) / 1000).toFixed(1);
  console.log(allPassed(all)
    ? `doctor passed: ${all.length} checks, ${warnings} warning(s), ${took} s`
    : `doctor FAILED: ${failures} of ${all.length} checks failed (${warnings} warning(s)), ${took} s: fix the FAIL lines from the top`);
  return allPassed(all) ? 0 : 1;
}

function parseArgs(argv: string[]): Args | string | 'help' {
  const a: Args = { webhookUrl: null, ca: [], timeoutMs: 5000 };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    if (flag === '--help' || flag === '-h' || flag === 'help') return 'help';
    const value = argv[i + 1];
    if (value === undefined) return `${flag} needs a value`;
    switch (flag) {
      case '--webhook-url':
        if (!/^https?:\/\/\S+$/.test(value)) return `--webhook-url must be an https:// URL (got "${value}")`;
        a.webhookUrl = value;
        break;
      case '--ca':
        a.ca.push(value);
        break;
      case '--timeout-ms':
        if (!/^\d+$/.test(value) || Number(value) < 100 || Number(value) > 60000) return '--timeout-ms must be 100-60000';
        a.timeoutMs = Number(value);
        break;
      default:
        return `unknown option ${flag}`;
    }
  }
  return a;
}

function usage(message: string): number {
  console.error(`${message}\n${USAGE}`);
  return 2;
}

runCommand('doctor', () => main(process.argv.slice(2), process.env));

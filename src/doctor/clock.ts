import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { CheckResult, failed, ok, warn } from '../preflight/report';
import { messageOf } from './check';

/** Off by more than this: FAIL (webhook signatures carry a timestamp; CDRs and reports are in this clock's time). */
export const CLOCK_FAIL_S = 5;
/** A Date header has whole seconds: within this, the clock is as right as can be told from it. */
const CLOCK_OK_S = 2;

export interface ClockCheck {
  /** Provider API addresses whose answers' Date header the clock is compared with (any answer will do: no credential is sent). */
  urls: string[];
  timeoutMs: number;
  /** Whether NTP says it is synchronized (timedatectl); null: cannot tell. Injectable for tests. */
  ntp?: () => Promise<boolean | null>;
  now?: () => number;
}

/**
 * This host's clock against the provider's (the Date header of its API's answer, midpoint of the round
 * trip, with half a second for the header's whole seconds) and NTP's own say (timedatectl). Off by more
 * than 5 s: FAIL; neither source available: WARN (unknown).
 */
export async function checkClock(o: ClockCheck): Promise<CheckResult[]> {
  const check = 'clock';
  const [offset, ntp] = await Promise.all([firstOffset(o), (o.ntp ?? ntpSynchronized)(o.timeoutMs)]);
  const ntpText = ntp === null ? 'NTP state unknown (no timedatectl)' : ntp ? 'NTP synchronized' : 'NTP NOT synchronized';
  if ('offsetS' in offset) {
    const off = Math.abs(offset.offsetS);
    const text = `${offset.offsetS >= 0 ? 'behind' : 'ahead of'} ${offset.from}'s Date by ${off.toFixed(1)} s`;
    if (off > CLOCK_FAIL_S) {
      return [failed(check, `${text} (more than ${CLOCK_FAIL_S} s; ${ntpText}): sync it (systemd-timesyncd or chrony): signed webhooks carry a timestamp, CDRs this clock's time`)];
    }
    if (off > CLOCK_OK_S) return [warn(check, `${text}; ${ntpText}: check the host's time synchronization`)];
    if (ntp === false) return [warn(check, `in step with ${offset.from} now, but ${ntpText}: it will drift (enable systemd-timesyncd or chrony)`)];
    return [ok(check, `in step with ${offset.from} (within ${CLOCK_OK_S} s); ${ntpText}`)];
  }
  if (ntp === true) return [ok(check, `NTP synchronized (timedatectl); no provider Date to compare: ${offset.why}`)];
  return [warn(check, `unknown: ${ntpText}, and no provider Date to compare (${offset.why})`)];
}

async function firstOffset(o: ClockCheck): Promise<{ offsetS: number; from: string } | { why: string }> {
  const whys: string[] = [];
  for (const url of [...new Set(o.urls)]) {
    const r = await dateOffset(url, o.timeoutMs, o.now ?? Date.now);
    if ('offsetS' in r) return r;
    whys.push(r.why);
  }
  return { why: whys.join('; ') || 'no provider API configured' };
}

/** How far this clock is behind (positive) or ahead of (negative) the server's Date header. */
export async function dateOffset(url: string, timeoutMs: number, now: () => number = Date.now): Promise<{ offsetS: number; from: string } | { why: string }> {
  let host: string;
  try {
    host = new URL(url).host;
  } catch {
    return { why: `"${url}" is not a URL` };
  }
  const t0 = now();
  const p0 = performance.now();
  let res: Response;
  try {
    res = await fetch(url, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    return { why: `${host} did not answer (${messageOf(err)})` };
  }
  const mid = t0 + (performance.now() - p0) / 2;
  await res.body?.cancel().catch(() => undefined);
  const date = res.headers.get('date');
  const at = date ? Date.parse(date) : NaN;
  if (Number.isNaN(at)) return { why: `${host}'s answer has no Date header` };
  // The header truncates to the second: the server's time was within [at, at + 1 s).
  return { offsetS: (at + 500 - mid) / 1000, from: host };
}

/** `timedatectl show -p NTPSynchronized --value`: true, false, or null when there is no timedatectl (containers). */
export function ntpSynchronized(timeoutMs: number): Promise<boolean | null> {
  return new Promise((resolve) => {
    execFile('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: timeoutMs }, (err, stdout) => {
      if (err) return resolve(null);
      const v = stdout.trim();
      resolve(v === 'yes' ? true : v === 'no' ? false : null);
    });
  });
}

/**
 * A walk through a running sandbox in headless Chromium, timed, with screenshots for the README:
 *   node dist/test/bench/sandbox-tour.js [http://127.0.0.1:3000/sandbox] [docs/sandbox.png]
 * It calls the demo agent, waits for the greeting, presses 1 2 3, takes the screenshot
 * mid-call, hangs up and waits for the CDR row (a second screenshot, "-ended" before the extension).
 * Run it where loopback is the only interface (sh test/run-isolated.sh), like the sandbox it visits.
 */
import { performance } from 'node:perf_hooks';
import { BrowserWaUser } from '../harness/browser-wa-user';
import { phoneState, timelineRows } from '../harness/sandbox-page';
import { until } from '../harness/timeline';

async function main(): Promise<void> {
  const url = process.argv[2] ?? 'http://127.0.0.1:3000/sandbox';
  const shot = process.argv[3] ?? 'docs/sandbox.png';
  const t0 = performance.now();
  const ms = () => `${Math.round(performance.now() - t0)} ms`;
  const browser = await BrowserWaUser.launch({ toneHz: 440, allowNonLoopbackInterfaces: process.env.WASB_ISOLATED !== '1' });
  try {
    const page = await browser.browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(`${url}?processing=off`, { waitUntil: 'load', timeout: 15000 });
    // Polled every 50 ms: the printed times are the tour's measurements.
    const step = async (what: string, test: () => Promise<boolean>, timeoutMs = 20000) => {
      await until(what, test, timeoutMs, async () => '', 50);
      console.log(`${what.padEnd(34)} ${ms()}`);
    };
    const rows = (kind: string) => timelineRows(page, kind);
    await step('page idle', async () => (await phoneState(page)) === 'idle');
    await page.click('[data-testid="call-business"]');
    await step('ringing (demo agent got the INVITE)', async () => (await rows('demo')).length > 0);
    await step('connected', async () => (await phoneState(page)) === 'connected');
    await step('greeting played, echo on', async () => (await rows('demo')).some((t) => /greeting played/.test(t)));
    await page.click('[data-testid="keypad"]');
    for (const k of ['1', '2', '3']) {
      await page.click(`[data-testid="key-${k}"]`);
      await step(`digit ${k} reported`, async () => (await rows('demo')).some((t) => new RegExp(`digit ${k}\\b`).test(t)));
    }
    await new Promise((r) => setTimeout(r, 1500));
    await page.screenshot({ path: shot });
    console.log(`screenshot                          ${shot}`);
    await page.click('[data-testid="hangup"]');
    await step('CDR row in the timeline', async () => (await rows('cdr')).length > 0);
    const ended = shot.replace(/(\.\w+)$/, '-ended$1');
    await page.screenshot({ path: ended });
    console.log(`screenshot                          ${ended}`);
  } finally {
    await browser.close();
  }
}

main().catch((err: unknown) => {
  console.error((err as Error).message);
  process.exit(1);
});

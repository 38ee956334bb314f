import type { Page } from 'puppeteer-core';

/* What the sandbox's browser phone shows, read through its test hooks (src/sandbox/public/phone.js). */

/** The phone's state: idle, calling, ringing-out, ringing-in, connected or ended. */
export async function phoneState(page: Page): Promise<string> {
  return String(await page.evaluate("document.body.dataset.state || ''"));
}

/** The wacid of the phone's current (or last) call. */
export async function phoneWacid(page: Page): Promise<string> {
  return String(await page.evaluate('window.sandboxPhone.wacid'));
}

/** The text of every timeline row of one kind (webhook, api, sip, cdr, demo, phone, info). */
export function timelineRows(page: Page, kind: string): Promise<string[]> {
  return page.$$eval(`[data-testid="timeline"] [data-kind="${kind}"]`, (rows) => rows.map((r) => r.textContent ?? ''));
}

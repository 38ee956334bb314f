import type { Page } from 'puppeteer-core';
import { TONE_METER_WORKLET } from './browser-wa-user';

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

/**
 * In the page: a Web Audio meter on the received audio. Each 20 ms frame's level and the share of its
 * energy at each listened frequency are kept, so a test can tell speech (loud, no tone) from a tone.
 */
export async function installMeter(page: Page, freqs: number[]): Promise<void> {
  // A string, evaluated in the page: this file is compiled without the DOM's types.
  await page.evaluate(`(async (worklet, hz) => {
    window.__frames = [];
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([worklet], { type: 'text/javascript' })));
    const source = ctx.createMediaStreamSource(window.sandboxPhone.remoteStream);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    sink.connect(ctx.destination);
    const latest = hz.map(() => ({ rms: 0, share: 0 }));
    hz.forEach((freq, i) => {
      const node = new AudioWorkletNode(ctx, 'tone-meter', { processorOptions: { freq } });
      node.port.onmessage = (e) => {
        latest[i] = e.data;
        // One frame per message of the first meter, with every meter's latest share.
        if (i === 0) window.__frames.push({ at: Date.now(), rms: e.data.rms, shares: latest.map((l) => l.share) });
      };
      source.connect(node).connect(sink);
    });
    await ctx.resume();
  })(${JSON.stringify(TONE_METER_WORKLET)}, ${JSON.stringify(freqs)})`);
}

/** Frames received since `since` that were loud; of those, the ones dominated by frequency number `i`, and the ones with no tone (speech). */
export async function frames(page: Page, since: number, i: number): Promise<{ loud: number; tone: number; speech: number }> {
  return await page.evaluate(`(() => {
    const loud = window.__frames.filter((f) => f.at >= ${since} && f.rms >= 300);
    return { loud: loud.length, tone: loud.filter((f) => f.shares[${i}] >= 0.5).length, speech: loud.filter((f) => Math.max(...f.shares) < 0.3).length };
  })()`) as { loud: number; tone: number; speech: number };
}

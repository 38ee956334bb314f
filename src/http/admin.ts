import Router from '@koa/router';
import { Context, Next } from 'koa';
import { PermissionStore } from '../calls/permissions';
import { normalizeE164 } from '../util/numbers';
import { PermissionRequestBody, ProviderError } from '../calls/provider-port';
import { providerErrorText } from '../providers/error-text';
import { NumberDirectory, NumberRoute } from '../calls/numbers-port';
import { BSUID } from '../calls/call-events';
import { CallingSettingsChange, validateSettingsChange } from '../calls/calling-settings';
import { Logger } from '../log';
import type { NumberSummary, ReloadOutcome } from '../numbers';
import type { ListedNotice } from '../cdr/account-notices';
import { roleOf } from './auth';
import { jsonBody } from './json-body';

export interface AdminDeps {
  permissions: PermissionStore;
  /**
   * The business numbers (src/numbers): each one's provider (permission requests, calling settings);
   * listed by GET /api/numbers, reloaded by POST /api/numbers/reload.
   */
  numbers: NumberDirectory & { summaries(): NumberSummary[]; reload(): ReloadOutcome };
  /** The PBX targets' OPTIONS health ('up', 'down', 'unknown'), by SIP URI; a target it does not name is 'unknown'. */
  pbxHealth: () => Readonly<Record<string, 'up' | 'down' | 'unknown'>>;
  /** The latest account notices (calling restricted, quality warnings, settings changed) per provider account and phone id. */
  notices: () => Promise<ListedNotice[]>;
  log: Logger;
}

/**
 * Operator API under /api (Bearer ADMIN_API_TOKEN, checked by the /api guard in auth.ts): call-permission
 * requests and records, the phone number's calling settings, and the business numbers (list, reload).
 */
export function adminRoutes(d: AdminDeps): Router {
  const router = new Router({ prefix: '/api' });
  // The app-level /api guard (auth.ts) checks tokens; this only makes sure these routes stay admin-only.
  router.use(async (ctx: Context, next: Next) => {
    if (roleOf(ctx) !== 'admin') {
      ctx.status = 403;
      ctx.body = { error: 'this needs the admin token' };
      return;
    }
    await next();
  });

  const business = (v: unknown): string | null => (typeof v === 'string' ? normalizeE164(v) : (d.numbers.agentDefault()?.line.number ?? null));
  /** The number's route (provider, line) for an E.164 business number, or why there is none. */
  const routeOf = (e164: string): NumberRoute | string => d.numbers.byNumber(e164) ?? `business number ${e164} is not served by this bridge (NUMBERS_FILE or WA_BUSINESS_NUMBER)`;
  /** A user's address: E.164, or a BSUID. */
  const userOf = (v: unknown): string | null => (typeof v !== 'string' ? null : BSUID.test(v) ? v : normalizeE164(v));

  router.post('/permission-requests', async (ctx) => {
    const body = await jsonBody(ctx);
    if (!body) return;
    const to = userOf(body.to);
    const from = business(body.from);
    const request = permissionRequestOf(body);
    if (!to || !from || typeof request === 'string') {
      ctx.status = 400;
      ctx.body = { error: !to ? '"to" must be an E.164 number or a BSUID' : !from ? '"from" must be an E.164 number (or set WA_BUSINESS_NUMBER)' : request };
      return;
    }
    const route = routeOf(from);
    if (typeof route === 'string') return problem(ctx, 404, route);
    try {
      const { messageId } = await d.permissions.request(route, to, request as PermissionRequestBody, 'api');
      ctx.status = 202;
      ctx.body = { sent: true, messageId };
    } catch (err) {
      ctx.status = 502;
      ctx.body = { error: err instanceof ProviderError ? providerErrorText(err) : (err as Error).message };
    }
  });

  router.get('/permissions', async (ctx) => {
    const b = typeof ctx.query.business === 'string' ? normalizeE164(ctx.query.business) ?? undefined : undefined;
    const c = userOf(ctx.query.customer) ?? undefined;
    ctx.body = { replies: await d.permissions.list({ businessNumber: b, customerNumber: c }) };
  });

  router.get('/permissions/check', async (ctx) => {
    const c = userOf(ctx.query.customer);
    const b = business(ctx.query.business);
    if (!c || !b) {
      ctx.status = 400;
      ctx.body = { error: 'customer (E.164 or BSUID) and business (unless a default number is set) must be given' };
      return;
    }
    ctx.body = await d.permissions.check(b, c);
  });

  router.get('/settings', async (ctx) => {
    const target = settingsTarget(ctx.query.phoneNumber);
    if (typeof target === 'string') return problem(ctx, 400, target);
    await relay(ctx, () => target.provider.getCallingSettings(target.line));
  });

  router.post('/settings', async (ctx) => {
    const body = await jsonBody(ctx);
    if (!body) return;
    const { phoneNumber, ...change } = body;
    const target = settingsTarget(phoneNumber);
    if (typeof target === 'string') return problem(ctx, 400, target);
    const problems = validateSettingsChange(change);
    if (problems.length) return problem(ctx, 400, problems.join('; '));
    await relay(ctx, () => target.provider.updateCallingSettings(target.line, change as CallingSettingsChange));
  });

  router.get('/numbers', async (ctx) => {
    const health = d.pbxHealth();
    const notices = await d.notices();
    ctx.body = {
      numbers: d.numbers.summaries().map((n) => ({
        ...n,
        pbx: { ...n.pbx, targets: n.pbx.targets.map((uri) => ({ uri, health: health[uri] ?? 'unknown' })) },
        // What the provider last said about this number (or its whole account): restrictions first.
        notices: notices.filter((x) => x.provider === n.provider.name && (x.phone_id === null || x.phone_id === n.phoneId)),
      })),
    };
  });

  router.post('/numbers/reload', (ctx) => {
    const r = d.numbers.reload();
    if (r.ok) {
      ctx.body = { reloaded: true, numbers: r.numbers, accounts: r.accounts };
      return;
    }
    ctx.status = r.reason === 'no-file' ? 409 : 422;
    ctx.body = { reloaded: false, error: r.reason === 'no-file' ? r.problems[0] : 'NUMBERS_FILE refused: the running numbers stay', problems: r.problems };
  });

  /** The number whose settings are read or changed: its provider asks by WABA id (YCloud) or phone number id (Meta). */
  function settingsTarget(phone: unknown): NumberRoute | string {
    const phoneNumber = business(phone);
    if (!phoneNumber) return 'phoneNumber must be E.164 (or set a default business number)';
    const route = routeOf(phoneNumber);
    if (typeof route === 'string') return route;
    if (route.providerKind === 'ycloud' && !route.line.wabaId) return `the WABA id of ${phoneNumber} is not configured (WA_WABA_ID or wabaId in NUMBERS_FILE)`;
    if (route.providerKind !== 'ycloud' && !route.line.phoneId) return `the phone number id of ${phoneNumber} is not configured (WA_PHONE_ID or phoneId in NUMBERS_FILE)`;
    return { ...route, line: { ...route.line, number: phoneNumber } };
  }

  async function relay(ctx: Context, fn: () => Promise<unknown>): Promise<void> {
    try {
      ctx.body = (await fn()) ?? { ok: true };
    } catch (err) {
      const e = err instanceof ProviderError ? err : null;
      ctx.status = e?.httpStatus && e.httpStatus < 500 ? e.httpStatus : 502;
      ctx.body = { error: e ? providerErrorText(e) : (err as Error).message, code: e?.code ?? null, whatsappCode: e?.whatsappCode ?? null };
    }
  }

  return router;
}

function problem(ctx: Context, status: number, error: string): void {
  ctx.status = status;
  ctx.body = { error };
}

function permissionRequestOf(body: Record<string, unknown>): PermissionRequestBody | string {
  const t = body.template as Record<string, unknown> | undefined;
  if (t !== undefined) {
    if (typeof t !== 'object' || t === null || typeof t.name !== 'string' || typeof t.language !== 'string') {
      return '"template" needs "name" and "language"';
    }
    return { kind: 'template', name: t.name, language: t.language, components: Array.isArray(t.components) ? t.components : [] };
  }
  if (typeof body.text === 'string' && body.text.trim()) return { kind: 'interactive', text: body.text };
  return 'give "text" (free-form request) or "template" ({name, language, components})';
}

import Router from '@koa/router';
import { Context, Next } from 'koa';
import { PermissionStore } from '../calls/permissions';
import { normalizeE164 } from '../util/numbers';
import { PermissionRequestBody, ProviderError, WhatsAppProvider } from '../calls/provider-port';
import { Logger } from '../log';
import type { NumberSummary, ReloadOutcome } from '../numbers';
import { CallingSettingsChange, settingsBody, validateSettingsChange } from '../providers/ycloud/settings';
import { roleOf } from './auth';
import { jsonBody } from './json-body';

export interface AdminDeps {
  wabaId: string | null;
  defaultBusinessNumber: string | null;
  permissions: PermissionStore;
  /** Where calling settings are read and written. */
  provider: WhatsAppProvider;
  /** The business numbers (src/numbers): listed by GET /api/numbers, reloaded by POST /api/numbers/reload. */
  numbers: { summaries(): NumberSummary[]; reload(): ReloadOutcome };
  /** The PBX targets' OPTIONS health ('up', 'down', 'unknown'), by SIP URI; a target it does not name is 'unknown'. */
  pbxHealth: () => Readonly<Record<string, 'up' | 'down' | 'unknown'>>;
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

  const business = (v: unknown): string | null => (typeof v === 'string' ? normalizeE164(v) : d.defaultBusinessNumber);

  router.post('/permission-requests', async (ctx) => {
    const body = await jsonBody(ctx);
    if (!body) return;
    const to = typeof body.to === 'string' ? normalizeE164(body.to) : null;
    const from = business(body.from);
    const request = permissionRequestOf(body);
    if (!to || !from || typeof request === 'string') {
      ctx.status = 400;
      ctx.body = { error: !to ? '"to" must be an E.164 number' : !from ? '"from" must be an E.164 number (or set WA_BUSINESS_NUMBER)' : request };
      return;
    }
    try {
      const { messageId } = await d.permissions.request(from, to, request as PermissionRequestBody, 'api');
      ctx.status = 202;
      ctx.body = { sent: true, messageId };
    } catch (err) {
      ctx.status = 502;
      ctx.body = { error: (err as Error).message };
    }
  });

  router.get('/permissions', async (ctx) => {
    const b = typeof ctx.query.business === 'string' ? normalizeE164(ctx.query.business) ?? undefined : undefined;
    const c = typeof ctx.query.customer === 'string' ? normalizeE164(ctx.query.customer) ?? undefined : undefined;
    ctx.body = { replies: await d.permissions.list({ businessNumber: b, customerNumber: c }) };
  });

  router.get('/permissions/check', async (ctx) => {
    const c = typeof ctx.query.customer === 'string' ? normalizeE164(ctx.query.customer) : null;
    const b = business(ctx.query.business);
    if (!c || !b) {
      ctx.status = 400;
      ctx.body = { error: 'customer (and business, unless WA_BUSINESS_NUMBER is set) must be E.164 numbers' };
      return;
    }
    ctx.body = await d.permissions.check(b, c);
  });

  router.get('/settings', async (ctx) => {
    const target = settingsTarget(ctx.query.phoneNumber);
    if (typeof target === 'string') return problem(ctx, 400, target);
    await relay(ctx, () => d.provider.getCallingSettings(target.wabaId, target.phoneNumber));
  });

  router.post('/settings', async (ctx) => {
    const body = await jsonBody(ctx);
    if (!body) return;
    const { phoneNumber, ...change } = body;
    const target = settingsTarget(phoneNumber);
    if (typeof target === 'string') return problem(ctx, 400, target);
    const problems = validateSettingsChange(change);
    if (problems.length) return problem(ctx, 400, problems.join('; '));
    await relay(ctx, () => d.provider.updateCallingSettings(target.wabaId, target.phoneNumber, settingsBody(change as CallingSettingsChange)));
  });

  router.get('/numbers', (ctx) => {
    const health = d.pbxHealth();
    ctx.body = {
      numbers: d.numbers.summaries().map((n) => ({
        ...n,
        pbx: { ...n.pbx, targets: n.pbx.targets.map((uri) => ({ uri, health: health[uri] ?? 'unknown' })) },
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

  function settingsTarget(phone: unknown): { wabaId: string; phoneNumber: string } | string {
    if (!d.wabaId) return 'WA_WABA_ID is not configured';
    const phoneNumber = business(phone);
    return phoneNumber ? { wabaId: d.wabaId, phoneNumber } : 'phoneNumber must be E.164 (or set WA_BUSINESS_NUMBER)';
  }

  async function relay(ctx: Context, fn: () => Promise<unknown>): Promise<void> {
    try {
      ctx.body = (await fn()) ?? { ok: true };
    } catch (err) {
      const e = err instanceof ProviderError ? err : null;
      ctx.status = e?.httpStatus && e.httpStatus < 500 ? e.httpStatus : 502;
      ctx.body = { error: (err as Error).message, code: e?.code ?? null, whatsappCode: e?.whatsappCode ?? null };
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

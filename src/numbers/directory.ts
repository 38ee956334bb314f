import { MetaSipMode, NumberDirectory, NumberRoute } from '../calls/numbers-port';
import { BusinessLine, WhatsAppProvider } from '../calls/provider-port';
import { WebhookSource } from '../events/webhook-source';
import { Logger } from '../log';
import { MediaPlan, MediaPlanOptions } from '../media/profiles';
import { Metrics } from '../metrics/metrics';
import { NumbersFileError } from './numbers-file';
import { ProviderAccount, providerAccount } from './provider-accounts';
import { AccountSpec, NumberSpec, NumbersSpec } from './spec';

export interface NumbersOptions {
  /** The bridge's rtpengine interfaces and PBX-leg SRTP, the same for every number's MediaPlan. */
  media: Pick<MediaPlanOptions, 'interfaces' | 'pbxSrtp'>;
  metrics?: Metrics;
  log: Logger;
  /** Reads the numbers afresh, for reload() (throws NumbersFileError); null: fixed for the process's life (the environment's). */
  reread: (() => NumbersSpec) | null;
  /**
   * The adapter of a number in Meta's SIP mode, made of its account's Graph adapter (still used for
   * permissions, messages and settings), its SIP mode and its line: the bridge passes the SIP adapter
   * (src/providers/meta-sip). Unset (the settings command): such a number's route carries the Graph adapter.
   */
  sipProvider?: (graph: WhatsAppProvider, mode: MetaSipMode, line: BusinessLine, account: string) => WhatsAppProvider;
}

/** A number's Meta SIP mode as GET /api/numbers shows it: never the password. */
export type SipModeSummary = Omit<MetaSipMode, 'password'>;

/** One number as GET /api/numbers shows it: no secret, ever. */
export interface NumberSummary {
  name: string;
  /** E.164; null: the environment's number without WA_BUSINESS_NUMBER. */
  number: string | null;
  phoneId: string | null;
  wabaId: string | null;
  provider: { name: string; kind: AccountSpec['kind'] };
  pbx: { targets: string[]; requestUser: string | null; codecs: string[] };
  codecPolicy: NumberSpec['codecPolicy'];
  recording: boolean;
  catchAll: boolean;
  agentDefault: boolean;
  /** Meta's native SIP carries its calls (without the password); null: the provider's API does. */
  sip: SipModeSummary | null;
}

export type ReloadOutcome =
  | { ok: true; numbers: number; accounts: number }
  /** `no-file`: the numbers come from the environment; `invalid`: the file was refused, the running set kept. */
  | { ok: false; reason: 'no-file' | 'invalid'; problems: string[] };

/** Everything made of one NumbersSpec: replaced whole by a reload, never changed. */
interface NumberSet {
  spec: NumbersSpec;
  /** By name, with the spec it was made of. */
  accounts: Map<string, { account: ProviderAccount; spec: AccountSpec }>;
  routes: NumberRoute[];
  /** By account name and phone id. */
  byPhoneId: Map<string, NumberRoute>;
  /** By account name and E.164. */
  byAccountNumber: Map<string, NumberRoute>;
  byNumber: Map<string, NumberRoute>;
  /** SIP-mode numbers by their E.164 digits (no "+"). */
  bySipUser: Map<string, NumberRoute>;
  catchAll: Map<string, NumberRoute>;
  agentDefault: NumberRoute | null;
}

const key = (account: string, id: string): string => `${account}\u0000${id}`;

/**
 * The business numbers this bridge serves and the provider accounts they are on (NumberDirectory), made
 * from NUMBERS_FILE or the environment. A reload builds a whole new set beside the running one and swaps
 * it in only when the file passes every check; a NumberRoute is never changed, so a call in progress keeps
 * the route (provider adapter, PBX targets, media plan) it started with.
 */
export class Numbers implements NumberDirectory {
  private current: NumberSet;
  /** Accounts a reload took away: their webhook doors stay open for the calls they still carry (until a restart). */
  private readonly retired = new Map<string, { account: ProviderAccount; spec: AccountSpec }>();

  constructor(spec: NumbersSpec, private readonly o: NumbersOptions) {
    this.current = this.build(spec);
  }

  forWebhook(providerName: string, phoneId: string, e164: string | null): NumberRoute | null {
    const c = this.current;
    return c.byPhoneId.get(key(providerName, phoneId))
      ?? (e164 !== null ? c.byAccountNumber.get(key(providerName, e164)) : undefined)
      ?? c.catchAll.get(providerName)
      ?? null;
  }

  /**
   * The number with this E.164. An agent may name a business number the bridge has no entry for (its
   * X-WhatsApp-Business-Number): when the agents' default number is a catch-all (the environment's one
   * number), that number's provider carries it, as before numbers had routes.
   */
  byNumber(e164: string): NumberRoute | null {
    const exact = this.current.byNumber.get(e164);
    if (exact) return exact;
    const d = this.current.agentDefault;
    // Not a SIP-mode number: Meta takes its calls only as that number, with its own password.
    if (!d || d.sip !== null || this.current.catchAll.get(d.providerName) !== d) return null;
    return Object.freeze({ ...d, line: Object.freeze({ number: e164, phoneId: null, wabaId: d.line.wabaId }) });
  }

  /**
   * The number in Meta's SIP mode that a Request-URI user names (`+15551234567` or `15551234567`, any
   * `;user-params` Meta's settings append ignored); null: none (the INVITE is refused).
   */
  bySipUser(user: string): NumberRoute | null {
    const digits = /^\+?(\d{7,15})(;.*)?$/.exec(user.trim())?.[1];
    return digits !== undefined ? this.current.bySipUser.get(digits) ?? null : null;
  }

  /** A provider account's adapter by name (running or retired: a call it carries can still be ended). */
  account(name: string): WhatsAppProvider | null {
    return (this.current.accounts.get(name) ?? this.retired.get(name))?.account.provider ?? null;
  }

  /** A provider account's webhook source by name (the path segment of /webhooks/<name>); null: no such account. */
  source(name: string): WebhookSource | null {
    return (this.current.accounts.get(name) ?? this.retired.get(name))?.account.webhooks ?? null;
  }

  /** The account of rows written before accounts had names (CDRs, stored events): the agents' default number's, else the first. */
  defaultAccount(): string {
    return this.current.agentDefault?.providerName ?? [...this.current.accounts.keys()][0] ?? 'ycloud';
  }

  /** The longest request timeout of any account (shutdown bounds). */
  maxTimeoutMs(): number {
    return Math.max(0, ...[...this.current.accounts.values(), ...this.retired.values()].map((a) => a.spec.timeoutMs));
  }

  agentDefault(): NumberRoute | null {
    return this.current.agentDefault;
  }

  all(): NumberRoute[] {
    return [...this.current.routes];
  }

  /** The webhook sources by account name (the path segment of POST/GET /webhooks/<name>), retired accounts' included. */
  sources(): ReadonlyMap<string, WebhookSource> {
    const out = new Map<string, WebhookSource>();
    for (const [name, a] of this.retired) out.set(name, a.account.webhooks);
    for (const [name, a] of this.current.accounts) out.set(name, a.account.webhooks);
    return out;
  }

  /** The numbers as the admin API lists them. */
  summaries(): NumberSummary[] {
    const accounts = new Map(this.current.spec.accounts.map((a) => [a.name, a]));
    return this.current.spec.numbers.map((n) => ({
      name: n.name,
      number: n.number,
      phoneId: n.phoneId,
      wabaId: n.wabaId,
      provider: { name: n.account, kind: accounts.get(n.account)!.kind },
      pbx: { targets: [...n.pbx.targets], requestUser: n.pbx.requestUser, codecs: [...n.pbx.codecs] },
      codecPolicy: n.codecPolicy,
      recording: n.recording,
      catchAll: n.catchAll,
      agentDefault: n.agentDefault,
      sip: n.sip ? { hostname: n.sip.hostname, port: n.sip.port, username: n.sip.username, srtp: n.sip.srtp, g711: n.sip.g711, webhooks: n.sip.webhooks } : null,
    }));
  }

  /** Every PBX target of every number, once (for the OPTIONS pings). */
  pbxTargets(): string[] {
    return [...new Set(this.current.spec.numbers.flatMap((n) => n.pbx.targets))];
  }

  /** The credentials in use (running and retired accounts), for the log's scrubbing. */
  secrets(): readonly string[] {
    // The same array until a reload changes the accounts (the logger asks at every line).
    if (this.secretsOf?.set !== this.current || this.secretsOf.retired !== this.retired.size) {
      const of = (a: AccountSpec): string[] => (a.kind === 'ycloud' ? [a.apiKey, a.webhookSecret] : [a.accessToken, a.appSecret, a.verifyToken]);
      const pbxPasswords = this.current.spec.numbers.flatMap((n) => (n.pbx.auth ? [n.pbx.auth.password] : []));
      const list = [...new Set([...[...this.current.spec.accounts, ...[...this.retired.values()].map((a) => a.spec)].flatMap(of), ...pbxPasswords, ...this.sipPasswords])];
      this.secretsOf = { set: this.current, retired: this.retired.size, list };
    }
    return this.secretsOf.list;
  }

  private secretsOf: { set: NumberSet; retired: number; list: readonly string[] } | null = null;
  /**
   * Every SIP password a set was built with: one stays listed after a reload drops or changes it, as a call
   * begun before may still be answering Meta's challenges with it (until a restart).
   */
  private readonly sipPasswords = new Set<string>();

  /**
   * Re-reads NUMBERS_FILE (SIGHUP, POST /api/numbers/reload). A file that fails any check is refused as a
   * whole: every problem is logged and returned, and the running numbers stay.
   */
  reload(): ReloadOutcome {
    const { log } = this.o;
    if (!this.o.reread) {
      const problems = ['NUMBERS_FILE is not set: the number comes from the environment, read at start-up only (restart the bridge to change it)'];
      log.warn({ problems }, 'numbers not reloaded');
      return { ok: false, reason: 'no-file', problems };
    }
    let next: NumberSet;
    try {
      next = this.build(this.o.reread());
    } catch (err) {
      if (!(err instanceof NumbersFileError)) throw err;
      for (const problem of err.problems) log.error({ file: err.file, problem }, 'NUMBERS_FILE refused: the running numbers stay');
      return { ok: false, reason: 'invalid', problems: err.problems };
    }
    const before = this.current;
    for (const [name, a] of before.accounts) {
      if (next.accounts.has(name)) continue;
      this.retired.set(name, a);
      log.warn({ account: name }, 'provider account removed: its webhooks are still accepted for the calls it carries, until a restart');
    }
    for (const name of next.accounts.keys()) this.retired.delete(name);
    this.current = next;
    log.info({ numbers: next.routes.map((r) => r.name), accounts: [...next.accounts.keys()] }, 'numbers reloaded');
    return { ok: true, numbers: next.routes.length, accounts: next.accounts.size };
  }

  private build(spec: NumbersSpec): NumberSet {
    const accounts = new Map(spec.accounts.map((a) => [a.name, { account: providerAccount(a, this.o.metrics), spec: a }]));
    const set: NumberSet = {
      spec, accounts, routes: [], byPhoneId: new Map(), byAccountNumber: new Map(), byNumber: new Map(), bySipUser: new Map(), catchAll: new Map(),
      agentDefault: null,
    };
    for (const n of spec.numbers) {
      const account = accounts.get(n.account)?.account;
      if (!account) throw new Error(`number ${n.name} names provider account ${n.account}, which is not defined`);
      // '' only for the environment's number without WA_BUSINESS_NUMBER: the calls take the number the webhook names.
      const line: BusinessLine = Object.freeze({ number: n.number ?? '', phoneId: n.phoneId, wabaId: n.wabaId });
      const sip = n.sip ? Object.freeze({ ...n.sip }) : null;
      if (sip) this.sipPasswords.add(sip.password);
      const route: NumberRoute = Object.freeze({
        name: n.name,
        line,
        providerName: account.name,
        providerKind: sip ? 'meta-sip' : account.kind,
        provider: sip && this.o.sipProvider ? this.o.sipProvider(account.provider, sip, line, account.name) : account.provider,
        pbx: Object.freeze({ targets: [...n.pbx.targets], requestUser: n.pbx.requestUser, auth: n.pbx.auth }),
        // Meta's SIP: its keying on Meta's leg, and with Meta's G.711 option G.711 passed through both ways.
        plan: new MediaPlan({ ...this.o.media, pbxCodecs: [...n.pbx.codecs], codecPolicy: sip?.g711 ? 'prefer-g711' : n.codecPolicy, waSrtp: sip?.srtp ?? 'dtls' }),
        recording: n.recording,
        sip,
      });
      set.routes.push(route);
      if (n.phoneId !== null) set.byPhoneId.set(key(account.name, n.phoneId), route);
      if (n.number !== null) {
        set.byAccountNumber.set(key(account.name, n.number), route);
        set.byNumber.set(n.number, route);
        if (sip) set.bySipUser.set(n.number.slice(1), route);
      }
      if (n.catchAll) set.catchAll.set(account.name, route);
      if (n.agentDefault && n.number !== null) set.agentDefault = route;
    }
    return set;
  }
}

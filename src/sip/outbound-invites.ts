import net from 'node:net';
import Srf from 'drachtio-srf';
import { Config } from '../config';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { BSUID, normalizeE164 } from '../util/numbers';
import { RefusalLog } from '../refusal-log';
import { DigestAuth, SourceAllowList } from './trust';

export interface AcceptedInvite {
  businessNumber: string;
  customerNumber: string;
  agent: string | null;
  phoneId: string | null;
  /** The agent's X-WhatsApp-Context (a CRM ticket, a campaign): echoed back by the provider, kept in the CDR. */
  context: string | null;
}

/**
 * The gate in front of business-initiated calls: INVITEs from the PBX are taken only from trusted
 * addresses (and with digest credentials when configured); anything else is refused and logged,
 * because an open endpoint that places WhatsApp calls is a toll-fraud hole.
 */
export class OutboundGate {
  private readonly allow: SourceAllowList;
  private readonly digest: DigestAuth | null;
  /** Refusals are logged at most 20 per 10 s (a flood from many addresses is counted, not written out). */
  private readonly refusals: RefusalLog;

  /**
   * `agentDefault`: the business number (and its phone id) agents call from when the INVITE names none
   * (the numbers file's agentDefault, or WA_BUSINESS_NUMBER); read at each INVITE, so a reload applies.
   */
  constructor(
    cfg: Config['outbound'],
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    refusals?: RefusalLog,
    private readonly agentDefault: () => { number: string; phoneId: string | null } | null = () => (cfg.defaultBusinessNumber ? { number: cfg.defaultBusinessNumber, phoneId: cfg.defaultPhoneId } : null),
  ) {
    this.allow = new SourceAllowList(cfg.trustedSources);
    this.digest = cfg.auth ? new DigestAuth(cfg.auth) : null;
    this.refusals = refusals ?? new RefusalLog(this.log);
  }

  /**
   * The first check on an INVITE, before it is charged to any rate limit: from a trusted address, or
   * answered 403 here (so untrusted floods cannot use up the PBX's INVITE budget).
   */
  fromTrustedSource(req: Srf.SrfRequest, res: Srf.SrfResponse): boolean {
    if (this.allow.allows(req.source_address)) return true;
    this.refusals.warn({ source: req.source_address, agent: agentOf(req), dialled: maskedNumber(req.uri) }, 'INVITE refused: source address not trusted');
    res.send(403, 'Forbidden', { headers: { Reason: 'SIP;cause=403;text="source not trusted"' } });
    this.metrics?.inviteReceived('refused_untrusted');
    return false;
  }

  /**
   * Answers the INVITE itself and returns null when it may not place a call; else what to dial. The
   * source has passed fromTrustedSource (and the rate limits).
   */
  admit(req: Srf.SrfRequest, res: Srf.SrfResponse): AcceptedInvite | null {
    const source = req.source_address;
    const agent = agentOf(req);
    if (this.digest) {
      const verdict = this.digest.verify('INVITE', req.uri, req.get('Authorization') || undefined);
      if (verdict !== 'ok') {
        const quiet = verdict === 'missing' || verdict === 'stale';
        if (!quiet) this.refusals.warn({ source, agent, dialled: maskedNumber(req.uri), verdict }, 'INVITE refused: digest credentials not accepted');
        res.send(401, 'Unauthorized', { headers: { 'WWW-Authenticate': this.digest.challenge(verdict === 'stale') } });
        this.metrics?.inviteReceived(quiet ? 'challenged' : 'refused_auth');
        return null;
      }
    }
    const dialled = dialledNumber(req.uri);
    // A WhatsApp user known only by BSUID (their calls reach the PBX From that user part) is dialled back by it.
    const bsuid = dialled !== null && BSUID.test(dialled) ? dialled : null;
    if (!bsuid && (dialled === null || !/^[+\d\s().-]+$/.test(dialled))) {
      res.send(404, 'Not Found', { headers: { Reason: 'Q.850;cause=1;text="not a phone number"' } });
      this.metrics?.inviteReceived('refused_not_a_number');
      return null;
    }
    const customerNumber = bsuid ?? normalizeE164(dialled!);
    if (!customerNumber) {
      res.send(484, 'Address Incomplete', { headers: { Reason: 'Q.850;cause=28;text="not a complete E.164 number"' } });
      this.metrics?.inviteReceived('refused_incomplete_number');
      return null;
    }
    const header = req.get('X-WhatsApp-Business-Number');
    const fallback = this.agentDefault();
    const businessNumber = header ? normalizeE164(header) : (fallback?.number ?? null);
    const phoneIdHeader = req.get('X-WhatsApp-Phone-Id');
    if (phoneIdHeader && !PHONE_ID.test(phoneIdHeader)) {
      res.send(400, 'Bad Request', { headers: { Reason: 'SIP;cause=400;text="X-WhatsApp-Phone-Id is not a phone number id"' } });
      this.metrics?.inviteReceived('refused_malformed');
      return null;
    }
    if (!businessNumber) {
      this.log.error({ source, header: header ? maskedNumber(`tel:${header}`) : null }, 'INVITE refused: no business number (header missing or invalid, WA_BUSINESS_NUMBER unset)');
      res.send(503, 'Service Unavailable', { headers: { Reason: 'Q.850;cause=41;text="no business number to call from"' } });
      this.metrics?.inviteReceived('refused_no_business_number');
      return null;
    }
    const contextHeader = req.get('X-WhatsApp-Context') || null;
    if (contextHeader !== null && !CONTEXT.test(contextHeader)) {
      res.send(400, 'Bad Request', { headers: { Reason: `SIP;cause=400;text="X-WhatsApp-Context must be at most ${MAX_CONTEXT_CHARS} printable characters"` } });
      this.metrics?.inviteReceived('refused_malformed');
      return null;
    }
    this.metrics?.inviteReceived('accepted');
    return {
      businessNumber,
      customerNumber,
      agent,
      context: contextHeader,
      phoneId: phoneIdHeader || (businessNumber === fallback?.number ? fallback.phoneId : null),
    };
  }
}

/**
 * What an agent's INVITE may pass to the provider in X-WhatsApp-Context (echoed in Meta's webhooks
 * and kept in the CDR): printable, bounded so that it fits biz_opaque_callback_data (512) with the call id.
 */
export const MAX_CONTEXT_CHARS = 400;
const CONTEXT = new RegExp(`^[^\\x00-\\x1f\\x7f]{1,${MAX_CONTEXT_CHARS}}$`);
/** A WhatsApp phone number id: digits (YCloud's are 15). */
const PHONE_ID = /^\d{1,32}$/;
/** What the CDR, logs and metrics take as an agent's name (the From URI's user part). */
const AGENT = /^[A-Za-z0-9_.!~*'()+-]{1,64}$/;

/** The calling agent: the From URI's user part, when it is a plain name (else null, never raw input). */
function agentOf(req: Srf.SrfRequest): string | null {
  const from = req.getParsedHeader('From');
  const user = /^sips?:([^@;>]+)@/.exec(from?.uri ?? '')?.[1];
  return user && AGENT.test(user) ? user : null;
}

/** The Request-URI's user part (sip:/sips:) or number (tel:), percent-decoded; null when undecodable. */
export function dialledNumber(uri: string): string | null {
  const user = /^sips?:([^@;?]+)@/i.exec(uri)?.[1] ?? /^tel:([^;?]+)/i.exec(uri)?.[1] ?? '';
  try {
    return decodeURIComponent(user);
  } catch {
    return null; // a malformed %-escape
  }
}

/**
 * The dialled number as a log line may show it: its last 4 digits only (`***0100`), so refusal logs
 * do not collect the numbers people dial; null when the Request-URI names no number.
 */
export function maskedNumber(uri: string): string | null {
  const digits = (dialledNumber(uri) ?? '').replace(/\D/g, '');
  if (!digits) return null;
  return digits.length <= 4 ? '***' : `***${digits.slice(-4)}`;
}

/**
 * The start-up warning when agents' calls out are guarded by source addresses alone (null when digest
 * credentials are required too, when no source may place calls at all, or when only this machine may:
 * every trusted source on loopback, as in the sandbox). Over UDP a source address is whatever the
 * sender writes, so anyone who can reach the SIP port can pose as the PBX.
 */
export function outboundGuardWarning(cfg: Pick<Config['outbound'], 'trustedSources' | 'auth'>): string | null {
  if (cfg.trustedSources.length === 0 || cfg.auth) return null;
  // A loopback source cannot come in from a network: the kernel drops such packets on other interfaces.
  if (cfg.trustedSources.every(isLoopbackSource)) return null;
  return 'SECURITY: calls to WhatsApp are guarded only by SIP_TRUSTED_SOURCES, and a UDP source address can be forged: '
    + 'anyone who reaches the SIP port can place WhatsApp calls at your cost. Set SIP_AUTH_USERNAME and SIP_AUTH_PASSWORD '
    + '(digest) and/or take the PBX\'s INVITEs over TLS only (see docs/deploy.md, "Securing agents\' calls out")';
}

/** An address or CIDR of SIP_TRUSTED_SOURCES wholly inside 127.0.0.0/8 or ::1. */
function isLoopbackSource(source: string): boolean {
  const [addr, bits] = source.split('/');
  const a = (addr ?? '').toLowerCase();
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  if (net.isIPv4(v4)) return v4.startsWith('127.') && (bits === undefined || Number(bits) - (v4 === a ? 0 : 96) >= 8);
  return a === '::1' && (bits === undefined || bits === '128');
}

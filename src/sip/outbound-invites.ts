import Srf from 'drachtio-srf';
import { Config } from '../config';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { normalizeE164 } from '../calls/permissions';
import { DigestAuth, SourceAllowList } from './trust';

export interface AcceptedInvite {
  businessNumber: string;
  customerNumber: string;
  agent: string | null;
  phoneId: string | null;
}

/**
 * The gate in front of business-initiated calls: INVITEs from the PBX are taken only from trusted
 * addresses (and with digest credentials when configured); anything else is refused and logged,
 * because an open endpoint that places WhatsApp calls is a toll-fraud hole.
 */
export class OutboundGate {
  private readonly allow: SourceAllowList;
  private readonly digest: DigestAuth | null;

  constructor(private readonly cfg: Config['outbound'], private readonly log: Logger, private readonly metrics?: Metrics) {
    this.allow = new SourceAllowList(cfg.trustedSources);
    this.digest = cfg.auth ? new DigestAuth(cfg.auth) : null;
  }

  /** Answers the INVITE itself and returns null when it may not place a call; else what to dial. */
  admit(req: Srf.SrfRequest, res: Srf.SrfResponse): AcceptedInvite | null {
    const source = req.source_address;
    const from = req.getParsedHeader('From');
    const agent = /sips?:([^@;>]+)@/.exec(from?.uri ?? '')?.[1] ?? null;
    if (!this.allow.allows(source)) {
      this.log.warn({ source, agent, uri: req.uri }, 'INVITE refused: source address not trusted');
      res.send(403, 'Forbidden', { headers: { Reason: 'SIP;cause=403;text="source not trusted"' } });
      this.metrics?.inviteReceived('refused_untrusted');
      return null;
    }
    if (this.digest && !this.digest.verify('INVITE', req.get('Authorization') || undefined)) {
      const tried = req.has('Authorization');
      if (tried) this.log.warn({ source, agent }, 'INVITE refused: bad digest credentials');
      res.send(401, 'Unauthorized', { headers: { 'WWW-Authenticate': this.digest.challenge() } });
      this.metrics?.inviteReceived(tried ? 'refused_auth' : 'challenged');
      return null;
    }
    const user = /^sips?:([^@;]+)@/.exec(req.uri)?.[1] ?? /^tel:([^;]+)/.exec(req.uri)?.[1] ?? '';
    const dialled = decodeURIComponent(user);
    if (!/^[+\d\s().-]+$/.test(dialled)) {
      res.send(404, 'Not Found', { headers: { Reason: 'Q.850;cause=1;text="not a phone number"' } });
      this.metrics?.inviteReceived('refused_not_a_number');
      return null;
    }
    const customerNumber = normalizeE164(dialled);
    if (!customerNumber) {
      res.send(484, 'Address Incomplete', { headers: { Reason: 'Q.850;cause=28;text="not a complete E.164 number"' } });
      this.metrics?.inviteReceived('refused_incomplete_number');
      return null;
    }
    const header = req.get('X-WhatsApp-Business-Number');
    const businessNumber = header ? normalizeE164(header) : this.cfg.defaultBusinessNumber;
    if (!businessNumber) {
      this.log.error({ source, header }, 'INVITE refused: no business number (header missing or invalid, WA_BUSINESS_NUMBER unset)');
      res.send(503, 'Service Unavailable', { headers: { Reason: 'Q.850;cause=41;text="no business number to call from"' } });
      this.metrics?.inviteReceived('refused_no_business_number');
      return null;
    }
    this.metrics?.inviteReceived('accepted');
    return {
      businessNumber,
      customerNumber,
      agent,
      phoneId: req.get('X-WhatsApp-Phone-Id') || (businessNumber === this.cfg.defaultBusinessNumber ? this.cfg.defaultPhoneId : null),
    };
  }
}

import { MediaPlan } from '../media/profiles';
import { BusinessLine, WhatsAppProvider } from './provider-port';

/**
 * One business number as the calls use it: who carries it (provider account and adapter), how the
 * provider names it, and where its calls go on the PBX. Made by src/numbers from NUMBERS_FILE (or, for a
 * single-number deployment, from the environment); the calls never read a provider's settings.
 */
export interface NumberRoute {
  /** The number's name in the numbers file ("sales", "support-de"); "default" for the environment's one. */
  name: string;
  /** How the provider's requests name the number. */
  line: BusinessLine;
  /** The provider account's name: also its webhook path, POST /webhooks/<providerName>. */
  providerName: string;
  /** The provider's kind, as CDRs and metrics name it: "ycloud", "meta". */
  providerKind: string;
  provider: WhatsAppProvider;
  pbx: {
    /** The SIP URIs a WhatsApp user's call to this number is offered to, in order (failover). */
    targets: string[];
    /** The Request-URI user toward the PBX (a queue's extension); null: the business number. */
    requestUser: string | null;
    /** Digest credentials for this PBX's challenges (on the INVITE and in the dialog); null: none. */
    auth: { username: string; password: string } | null;
  };
  /** The rtpengine parameters of this number's calls (its PBX codecs and codec policy). */
  plan: MediaPlan;
  /** Whether this number's calls are recorded (needs RECORDING=all on the bridge). */
  recording: boolean;
  /**
   * Meta's native SIP carries this number's calls (Meta sends and takes the INVITEs over TLS; Graph
   * is still used for permissions, messages and settings); null: its calls go by the provider's API.
   * `provider` is then the SIP adapter (src/providers/meta-sip), and `providerKind` "meta-sip".
   */
  sip: MetaSipMode | null;
}

/** How a number in Meta's SIP mode meets Meta (its calling settings' `sip` part, and the SIP password). */
export interface MetaSipMode {
  /** The hostname Meta's settings name (sip.servers[0].hostname): the From domain of the bridge's INVITEs; the TLS certificate must cover it. */
  hostname: string;
  /** The port Meta's settings name (default 5061): where Meta sends its INVITEs over TLS. */
  port: number;
  /** The digest user in the bridge's answers to Meta's 407 (default: the business number without "+"). */
  username: string;
  /** Meta's SIP password for this number (GET settings?include_sip_credentials=true): both ways. */
  password: string;
  /** How SRTP is keyed on Meta's leg (srtp_key_exchange_protocol): DTLS with ICE-lite, or SDES. */
  srtp: 'dtls' | 'sdes';
  /** Meta's additional codecs PCMA/PCMU are on: a G.711 PBX gets them passed through, untranscoded. */
  g711: boolean;
  /** Meta also sends call webhooks for this number (sip.webhook_delivery): correlated by wacid, never acted on. */
  webhooks: boolean;
}

/** The business numbers this bridge serves (reloaded on SIGHUP: a call keeps the route it started with). */
export interface NumberDirectory {
  /**
   * The number a provider's webhook names by its phone number id (or, failing that, by its E.164
   * number); else the provider's catch-all number when one is set; else null (the call is refused).
   */
  forWebhook(providerName: string, phoneId: string, e164: string | null): NumberRoute | null;
  /** The number with this E.164, on any provider. */
  byNumber(e164: string): NumberRoute | null;
  /**
   * The number in Meta's SIP mode a Request-URI user names (`+15551234567` or `15551234567`): Meta's
   * INVITE to the bridge's SIP listener. null: no SIP-mode number has it (the INVITE is refused).
   */
  bySipUser(user: string): NumberRoute | null;
  /** The number agents call from when their INVITE names none (X-WhatsApp-Business-Number). */
  agentDefault(): NumberRoute | null;
  all(): NumberRoute[];
  /** A provider account's adapter by its name (an event's account, a CDR's `provider`); null when unknown. */
  account(name: string): WhatsAppProvider | null;
}

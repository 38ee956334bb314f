import type { Logger } from '../../../log';

/** The public vocabulary of the Meta native-SIP simulator (Meta's SIP gateway, `wa.meta.vc`). */

/** SRTP keying Meta uses on a number: DTLS with ICE-lite (WebRTC style) or SDES keys in the SDP. */
export type MetaSrtp = 'dtls' | 'sdes';

/** A business number in SIP mode, as configured on Meta's side (calling settings `sip`). */
export interface MetaSipNumber {
  /** The business number, E.164 with '+'. */
  number: string;
  /** Its Graph phone number id (Meta sends it as `x-wa-meta-phone-number-id`). */
  phoneId: string;
  /** The SIP server configured for the number: Meta's R-URI host, the certificate's name, the From domain Meta expects. */
  hostname: string;
  /** The SIP server's port (default 5061): Meta's R-URI port. */
  port?: number;
  /** Digest user both ways (default: the number without '+'). */
  username?: string;
  /** The number's SIP password (Meta's settings API hands it out). */
  password: string;
  srtp: MetaSrtp;
  /** `audio.additional_codecs`: Meta also offers PCMA and PCMU after opus. */
  g711?: boolean;
}

export interface MetaSipSimOptions {
  /** The sim's own drachtio-server (it must have a TLS contact: Meta speaks SIP over TLS only). */
  drachtio: { host: string; port: number; secret: string };
  /** The sim's own rtpengine's ng address; its interface stands in for Meta's public media address. */
  rtpengine: { address: string; port: number };
  /** Where the bridge listens for Meta: its drachtio TLS contact. */
  bridge: { host: string; port: number };
  /** CA file(s) (PEM) the sim trusts for the bridge's certificate; default: Node's bundled roots. */
  ca?: string | string[];
  numbers: MetaSipNumber[];
  log?: Logger;
  /** Bound on each wait outside the process: drachtio connect, TLS check, ng commands (default 5000 ms). */
  timeoutMs?: number;
  /** How long the sim waits for the business's first packet before giving up on releasing its own media (default 60 s). */
  firstPacketWaitMs?: number;
}

/** A plain RTP endpoint (the WhatsApp user's phone, e.g. test/harness RtpPhone). */
export interface RtpAddress { address: string; port: number }

/**
 * A WebRTC peer (the sandbox's browser phone) as the WhatsApp user of a user-initiated call: its offer,
 * and where the sim's answer goes. The sim's rtpengine then does ICE and DTLS-SRTP with the peer on the
 * user's leg and Meta's SRTP shape on the bridge's leg, both at once, with no transcoding (opus both ways).
 */
export interface WebRtcUser {
  /** The peer's SDP offer (opus and telephone-event/8000, ICE candidates inline, DTLS fingerprint). */
  offer: string;
  /** The sim's SDP answer for the peer, once the bridge has answered (18x with SDP, then 200: possibly twice). */
  onAnswer(sdp: string, stage: 'early' | 'answer'): void;
}

/** What a WebRTC user does with a business's call, given the sim's WebRTC offer (the page rings meanwhile). */
export type WebRtcReply = { answer: string } | { action: 'decline' } | { action: 'busy' };

/** How a call ended: who ended it, the INVITE's final status (null if none came), and why. */
export interface CallEnd {
  /** 'user': the WhatsApp side (the sim's BYE, CANCEL, refusal); 'business': the bridge; 'sim': a local failure or stop(). */
  by: 'user' | 'business' | 'sim';
  status: number | null;
  reason: string;
}

/** What a call saw of requests Meta refuses or merely answers. */
export interface CallCounters {
  /** re-INVITEs from the business side, each answered 488. */
  reinvitesRefused: number;
  /** UPDATEs from the business side, each answered 488. */
  updatesRefused: number;
  /** In-dialog OPTIONS, answered 200. */
  options: number;
}

/** The sim's totals over all calls and requests. */
export interface SimCounters extends CallCounters {
  userCalls: number;
  businessCalls: number;
  /** 407s sent to business INVITEs without (valid) credentials. */
  challenges: number;
  /** 403s for wrong digest credentials. */
  authFailures: number;
  /** 403s for a From domain other than the number's hostname. */
  fromMismatches: number;
  /** User-initiated calls not placed because the bridge's certificate failed Meta's check. */
  tlsRefusals: number;
  /** Out-of-dialog OPTIONS, answered 200. */
  outOfDialogOptions: number;
}

/** A user-initiated call: the WhatsApp user calls a business number. */
export interface UserCallRequest {
  /** The caller, E.164 with '+'. */
  from: string;
  /** The business number (one of the sim's numbers). */
  to: string;
  profileName?: string;
  ctaPayload?: string;
  deeplinkPayload?: string;
  /** The user's phone: where the sim's rtpengine sends the user's plain RTP (PCMU, telephone-event 101). */
  phone?: RtpAddress;
  /** Instead of `phone`: a WebRTC peer (the sandbox's browser phone). */
  webrtc?: WebRtcUser;
}

/** A business-initiated INVITE as the policy sees it (after the From check and digest). */
export interface BusinessCallInfo {
  /** The call's wacid (Meta's `x-wa-meta-wacid`). */
  wacid: string;
  /** The dialled user, E.164 with '+'. */
  to: string;
  /** The business number, E.164 with '+'. */
  from: string;
  headers: Record<string, string>;
  sdp: string;
}

/** What the WhatsApp user does with a business's call. */
export type BusinessCallAction =
  | { action: 'answer'; afterMs?: number; phone: RtpAddress }
  /** A WebRTC user: the phone rings (180) with `ring` given the sim's WebRTC offer; its reply answers (200) or refuses the call. */
  | { action: 'webrtc'; ring(offer: string): Promise<WebRtcReply> }
  | { action: 'decline' }
  | { action: 'busy' }
  | { action: 'no-answer' };

export type BusinessCallPolicy = (call: BusinessCallInfo) => BusinessCallAction | Promise<BusinessCallAction>;

/** Why the sim did not place a call: the bridge's certificate failed Meta's TLS check. */
export interface TlsRefusal { number: string; hostname: string; host: string; port: number; reason: string }

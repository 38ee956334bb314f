import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isAddressOrCidr, isDnsName, isNonPublicAddress, MIN_TRUSTED_PREFIX, tooBroad } from './addresses';
import { CODEC_POLICIES } from './codec-policy';
import {
  decimal, flag, hostPort, httpUrl, integer, ipAddress, listOf, oneOf, orOff, regExp, text, textWhere,
} from './parsers';
import { setting, Setting } from './setting';

/**
 * Every setting of the bridge, declared once: the environment variable, its type and checks, what
 * unset means, and its description. loadConfig (index.ts) reads them into the Config the code uses;
 * `npm run docs:config` writes docs/configuration.md's settings table (in this order) and .env.example
 * (laid out by env-layout.ts) from them, and test/unit/config-docs.test.ts fails when either differs.
 * A new setting: declare it here, place it in env-layout.ts, use it in index.ts, run `npm run docs:config`.
 */

/** The codecs a PBX leg may use (PBX_CODECS, and each number's in NUMBERS_FILE). */
export const PBX_CODECS = ['PCMU', 'PCMA', 'G722'] as const;
const SIP_URI = /^sips?:([^@\s]+@)?[^@\s:;]+(:\d+)?(;[^\s]*)?$/;
const E164 = /^\+[1-9]\d{6,14}$/;
/** A SIP user part (RFC 3261 "user"). */
const SIP_USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,64}$/;
const INTERFACE_NAME = /^[A-Za-z0-9_.-]+$/;
const MIN_TOKEN_LENGTH = 16;
/** The longest the PBX may send nothing before the keepalive file starts: WhatsApp gives up after 20-30 s. */
const KEEPALIVE_AFTER_MAX_MS = 15000;
const WA_PROVIDERS = ['ycloud', 'meta'] as const;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const interfaceName = textWhere((v) => INTERFACE_NAME.test(v), (v) => `must be an rtpengine interface name (letters, digits, _ . -) (got "${v}")`);
const dnsName = textWhere(isDnsName, (v) => `must be a DNS name, e.g. sip.example.com (not an IP address) (got "${v}")`);
const apiToken = textWhere((v) => v.length >= MIN_TOKEN_LENGTH, () => `must be at least ${MIN_TOKEN_LENGTH} characters`);
/** "Unset: none" for a text setting (its value is then `string | null`). */
const none = null as string | null;

export const SETTINGS = {
  // This host's network --------------------------------------------------------------------------
  PUBLIC_IP: setting({
    required: true,
    parse: ipAddress((v) => `must be an IP address, the one WhatsApp reaches this host's media on (got "${v}")`),
    doc: 'the address WhatsApp\'s media servers (and a PBX across the NAT) reach this host on: behind 1:1 NAT (EC2, GCE, Azure, ...), '
      + 'the public/elastic IP. Loopback, private, CGNAT and link-local addresses are refused',
  }),
  ALLOW_PRIVATE_PUBLIC_IP: setting({
    default: 'false', parse: flag,
    doc: '`true` accepts a non-public `PUBLIC_IP` (labs only: WhatsApp cannot send media to it)',
  }),

  // HTTP: webhooks, probes, /api ------------------------------------------------------------------
  HTTP_PORT: setting({
    default: '3000', parse: integer(0, 65535),
    doc: 'webhooks (`POST /webhooks/<provider account>`: `/webhooks/ycloud`, `/webhooks/meta`), `GET /healthz`, `GET /readyz`, `/api` and `/metrics`',
  }),
  HTTP_HOST: setting({
    unset: none, shown: 'all addresses',
    parse: textWhere((v) => net.isIP(v) !== 0 || v === 'localhost', (v) => `must be an IP address to listen on, e.g. 127.0.0.1 (got "${v}")`),
    doc: 'the address the HTTP side listens on: `127.0.0.1` when the HTTPS front (Caddy, nginx) runs on this host, as YCloud only calls `https://` URLs',
  }),
  PUBLIC_WEBHOOK_URL: setting({
    unset: none, shown: '(https://WEBHOOK_DOMAIN when that is set)', parse: httpUrl,
    doc: 'the public `https://` address the providers\' webhook URLs start with, before `/webhooks/<account>` (e.g. `https://wa.example.com`); '
      + 'read only by `npm run doctor`, which checks that it resolves, that its certificate verifies and that it reaches this bridge '
      + '([docs/doctor.md](docs/doctor.md))',
  }),
  TRUST_PROXY: setting({
    default: 'false', parse: textWhere((v) => /^(false|true|[1-9])$/.test(v), (v) => `must be "false", "true" (one proxy) or the number of proxies 1-9 (got "${v}")`)
      .transform((v) => (v === 'false' ? 0 : v === 'true' ? 1 : Number(v))),
    doc: '`true` (one) or the number of reverse proxies (1-9) in front of the bridge whose `X-Forwarded-For` is believed for the logged '
      + 'client address and the per-address limits; off, the socket\'s address is used',
  }),
  HTTP_MAX_CONNECTIONS: setting({
    default: '1000', parse: integer(10, 100000),
    doc: 'open HTTP connections at most; more are closed as they arrive',
  }),
  HTTP_MAX_CONNECTIONS_PER_CLIENT: setting({
    default: '100', parse: integer(1, 100000),
    doc: 'open HTTP connections from one address at most (behind a proxy on this host, every connection comes from the proxy\'s address)',
  }),
  WEBHOOK_READ_TIMEOUT_MS: setting({
    default: '10000', parse: integer(100, 60000),
    doc: 'a webhook body must arrive within this (else 408); the signature header is checked before any body is read, and bodies over 64 KiB (YCloud) or 512 KiB (Meta, a batch) get 413',
  }),
  WEBHOOK_MIN_BYTES_PER_S: setting({
    default: '4096', parse: integer(0, 10_000_000),
    doc: 'after its first second, a webhook body arriving slower than this on average is cut (408); `0`: no minimum',
  }),
  WEBHOOK_MAX_CONCURRENT_READS: setting({
    default: '32', parse: integer(1, 10000),
    doc: 'webhook bodies read at once, never queued: when full, the slowest read in the way is ended (503, `Retry-After`) to make way for the newcomer',
  }),
  WEBHOOK_MAX_READS_PER_CLIENT: setting({
    default: '8', parse: integer(1, 10000),
    doc: 'of those, bodies read at once from one address (beyond: its slowest read makes way)',
  }),
  WEBHOOK_VERIFIED_READS: setting({
    default: '8', parse: integer(0, 10000),
    doc: 'webhook body reads kept for addresses that sent a correctly signed webhook in the last hour; other requests cannot take them',
  }),

  // The provider: YCloud or Meta's Cloud API -------------------------------------------------------
  WA_PROVIDER: setting({
    default: 'ycloud', parse: oneOf(WA_PROVIDERS),
    doc: 'who carries the business number of a single-number deployment: `ycloud`, or `meta` (Meta\'s Cloud API, or a provider that passes '
      + 'its format through); its webhooks arrive at `POST /webhooks/ycloud` or `/webhooks/meta`. With `NUMBERS_FILE`, each number names '
      + 'its provider account there instead ([docs/numbers.md](docs/numbers.md))',
  }),
  NUMBERS_FILE: setting({
    unset: none, shown: '(none: one number, from the environment)', parse: text,
    doc: 'a YAML file of several business numbers, each with its provider account (credentials by reference), phone number id and PBX route; '
      + 'checked at start-up, reloaded on `SIGHUP` (or `POST /api/numbers/reload`) ([docs/numbers.md](docs/numbers.md))',
  }),

  // YCloud ----------------------------------------------------------------------------------------
  YCLOUD_API_KEY: setting({
    unset: none, shown: '(required for ycloud)', secret: true, parse: text,
    doc: 'the API key, sent as `X-API-Key`; required when `WA_PROVIDER=ycloud` and no `NUMBERS_FILE`',
  }),
  YCLOUD_WEBHOOK_SECRET: setting({
    unset: none, shown: '(required for ycloud)', secret: true, parse: text,
    doc: 'the webhook endpoint\'s signing secret (YCloud console, webhook endpoint); required with `YCLOUD_API_KEY`',
  }),
  YCLOUD_API_BASE_URL: setting({ default: 'https://api.ycloud.com/v2', parse: httpUrl, doc: 'YCloud\'s REST API' }),
  YCLOUD_WEBHOOK_TOLERANCE_SECONDS: setting({
    default: '300', parse: integer(1, 3600),
    doc: 'replay window (and clock skew accepted) for a webhook signature\'s timestamp, in seconds',
  }),
  YCLOUD_TIMEOUT_MS: setting({ default: '5000', parse: integer(100, 60000), doc: 'bound on each REST request to YCloud' }),

  // Meta's Cloud API ------------------------------------------------------------------------------
  META_ACCESS_TOKEN: setting({
    unset: none, shown: '(required for meta)', secret: true, parse: text,
    doc: 'the access token (a system user\'s), sent as `Authorization: Bearer <token>` (or as is in `META_AUTH_HEADER`); required when '
      + '`WA_PROVIDER=meta` and no `NUMBERS_FILE`',
  }),
  META_APP_SECRET: setting({
    unset: none, shown: '(required for meta)', secret: true, parse: text,
    doc: 'the app secret, which signs the webhooks (`X-Hub-Signature-256`)',
  }),
  META_VERIFY_TOKEN: setting({
    unset: none, shown: '(required for meta)', secret: true, parse: text,
    doc: 'the verify token given in the app\'s webhook settings, checked on Meta\'s `GET /webhooks/meta` (`hub.verify_token`)',
  }),
  META_API_BASE_URL: setting({
    default: 'https://graph.facebook.com/v23.0', parse: httpUrl,
    doc: 'the Graph API, with its version; a provider that proxies it (360dialog, ...) gives its own URL here',
  }),
  META_AUTH_HEADER: setting({
    default: 'Authorization', parse: textWhere((v) => HEADER_NAME.test(v), (v) => `must be an HTTP header name (got "${v}")`),
    doc: 'the header the token goes in: `Authorization` sends `Bearer <token>`, any other (e.g. 360dialog\'s `D360-API-KEY`) the token as is',
  }),
  META_TIMEOUT_MS: setting({ default: '5000', parse: integer(100, 60000), doc: 'bound on each request to the Graph API' }),
  META_SIP_TLS_CERT_FILE: setting({
    unset: none, shown: '(none)', parse: text,
    doc: 'the certificate file (PEM, the leaf then its intermediates) drachtio-server\'s TLS contact uses for Meta\'s native SIP; read only by '
      + '`npm run preflight`, which checks it as Meta will (chain, dates, the number\'s SIP hostname) ([docs/meta-sip.md](docs/meta-sip.md))',
  }),
  META_SIP_TLS_KEY_FILE: setting({
    unset: none, shown: '(none)', parse: text,
    doc: 'the private key file (PEM) drachtio-server\'s TLS contact uses; read only by `npm run preflight`, which checks it is the certificate\'s',
  }),

  // Meta's native SIP (Meta sends and takes the calls' INVITEs over TLS) ------------------------
  META_SIP_HOSTNAME: setting({
    unset: none, shown: '(off: calls go by the Graph API)', parse: dnsName,
    doc: 'puts the environment\'s number (`WA_PROVIDER=meta`, no `NUMBERS_FILE`) in Meta\'s SIP mode: the hostname its calling settings name '
      + 'as the SIP server (`sip.servers[0].hostname`), which the bridge\'s TLS certificate must cover and its INVITEs name as From domain. '
      + 'Needs `META_SIP_PASSWORD` and `WA_BUSINESS_NUMBER`. With `NUMBERS_FILE`, a number\'s `sip:` section says it instead '
      + '([docs/numbers.md](docs/numbers.md))',
  }),
  META_SIP_PORT: setting({
    default: '5061', parse: integer(1, 65535),
    doc: 'the port the number\'s calling settings name beside `META_SIP_HOSTNAME` (`sip.servers[0].port`): where Meta sends its INVITEs over TLS',
  }),
  META_SIP_USERNAME: setting({
    unset: none, shown: '(the business number without +)', parse: textWhere((v) => SIP_USER.test(v), (v) => `must be a SIP user part (got "${v}")`),
    doc: 'the digest user in the bridge\'s answers to Meta\'s 407 challenges',
  }),
  META_SIP_PASSWORD: setting({
    unset: none, shown: '(required for SIP mode)', secret: true, parse: text,
    doc: 'the number\'s SIP password, as Meta gives it (`GET /<phone number id>/settings?include_sip_credentials=true`, or the settings '
      + 'command): the bridge answers Meta\'s challenges with it and challenges Meta\'s INVITEs with it; required with `META_SIP_HOSTNAME`',
  }),
  META_SIP_SRTP: setting({
    default: 'dtls', parse: oneOf(['dtls', 'sdes']),
    doc: 'how SRTP is keyed on Meta\'s leg, as the number\'s settings say (`srtp_key_exchange_protocol`): `dtls` (DTLS with ICE-lite) or `sdes`',
  }),
  META_SIP_G711: setting({
    default: 'false', parse: flag,
    doc: '`true`: the number has Meta\'s additional codecs PCMA/PCMU on (`audio.additional_codecs`); a G.711 PBX gets them untranscoded',
  }),
  META_SIP_WEBHOOKS: setting({
    default: 'false', parse: flag,
    doc: '`true`: Meta also sends call webhooks for the number (`sip.webhook_delivery`); the bridge matches them to the SIP call by wacid, '
      + 'for the CDR, and never acts on them',
  }),
  META_SIP_DOMAIN: setting({
    default: 'wa.meta.vc', parse: dnsName,
    doc: 'Meta\'s SIP domain: the host of the Request-URI of the bridge\'s INVITEs to Meta (`sip:+<user>@wa.meta.vc;transport=tls`) and the realm '
      + 'Meta challenges them in',
  }),
  META_SIP_PROXY: setting({
    unset: none, shown: '(none: META_SIP_DOMAIN\'s DNS)',
    parse: textWhere((v) => SIP_URI.test(v), (v) => `must be a SIP URI, e.g. sips:127.0.0.1:5062 (got "${v}")`),
    doc: 'a SIP URI the INVITEs to Meta are sent to instead of where `META_SIP_DOMAIN`\'s DNS points (a test\'s or the sandbox\'s Meta simulator)',
  }),
  META_SIP_LISTEN_PORT: setting({
    default: '5061', parse: integer(1, 65535),
    doc: 'the port of drachtio-server\'s TLS listener that is Meta\'s: INVITEs arriving over TLS on it are taken as Meta\'s (digest-checked with '
      + 'the number\'s SIP password), never as the PBX\'s',
  }),
  META_SIP_TRUSTED_SOURCES: setting({
    unset: [] as string[], shown: '(none: any source that passes digest)',
    parse: listOf(textWhere(isAddressOrCidr, () => 'is not an IP address or CIDR').transform((v, ctx) => {
      if (!tooBroad(v)) return v;
      ctx.addIssue({
        code: 'custom',
        message: `trusts too much of the Internet (shortest prefix: /${MIN_TRUSTED_PREFIX.v4} for IPv4, /${MIN_TRUSTED_PREFIX.v6} for IPv6)`,
      });
      return v;
    })),
    doc: 'addresses/CIDRs Meta\'s INVITEs may come from on `META_SIP_LISTEN_PORT`, comma-separated (Meta\'s published ranges); unset, any '
      + 'address whose INVITE passes the number\'s digest challenge',
  }),

  // The WhatsApp business number ------------------------------------------------------------------
  WA_BUSINESS_NUMBER: setting({
    unset: none, shown: '(none)',
    parse: textWhere((v) => E164.test(v), (v) => `must be E.164, e.g. +14155550100 (got "${v}")`),
    doc: 'the business number agents call from when the PBX names none (E.164, e.g. `+14155550100`; an INVITE may name another in '
      + '`X-WhatsApp-Business-Number`)',
  }),
  WA_PHONE_ID: setting({
    unset: none, shown: '(none)', parse: text,
    doc: 'the phone number id of `WA_BUSINESS_NUMBER` (needed to end an agent\'s call before any webhook named it)',
  }),
  WA_WABA_ID: setting({
    unset: none, shown: '(none)', parse: text,
    doc: 'the WhatsApp Business Account id, for the calling settings (`npm run settings`)',
  }),

  // The PBX: calls from WhatsApp go there ---------------------------------------------------------
  PBX_TARGET: setting({
    unset: [] as string[], shown: '(required without NUMBERS_FILE)',
    parse: listOf(textWhere((v) => SIP_URI.test(v), () => 'is not a SIP URI'), { atLeastOne: 'names no SIP URI' }),
    doc: 'SIP URI(s), comma-separated, e.g. `sip:10.0.0.10:5060`, or over TLS `sip:pbx.example.com:5061;transport=tls`; '
      + 'later ones are tried only when earlier ones are unreachable. With `NUMBERS_FILE`, each number has its own targets there',
  }),
  PBX_AUTH_USERNAME: setting({
    unset: none, shown: '(off)', parse: text,
    doc: 'the user name the bridge answers a 401/407 from the PBX with (INVITEs, transfers, in-dialog requests); set with `PBX_AUTH_PASSWORD`',
  }),
  PBX_AUTH_PASSWORD: setting({
    unset: none, shown: '(off)', secret: true, parse: text,
    doc: 'the password for `PBX_AUTH_USERNAME`; set both, or neither',
  }),
  PBX_SRTP: setting({
    default: 'off', parse: oneOf(['off', 'sdes']),
    doc: '`sdes`: the PBX leg is offered SRTP keyed in the SDP (RFC 4568, `RTP/SAVP`); use with `;transport=tls` targets',
  }),
  PBX_CODECS: setting({
    default: 'PCMU,PCMA',
    parse: listOf(textWhere((v) => (PBX_CODECS as readonly string[]).includes(v.toUpperCase()), () => `is not one of ${PBX_CODECS.join(', ')}`)
      .transform((v) => v.toUpperCase())),
    doc: `codecs offered to the PBX, comma-separated, from ${PBX_CODECS.map((c) => `\`${c}\``).join(', ')}`,
  }),
  MEDIA_CODEC_POLICY: setting({
    default: 'transcode', parse: oneOf(CODEC_POLICIES),
    doc: '`prefer-g711`: agents\' calls offer WhatsApp the PBX\'s G.711 ahead of opus, so a WhatsApp that answers G.711 costs rtpengine no '
      + 'transcoding (0.4 % of a core per call against 1.5 %: [docs/load.md](docs/load.md)); a WhatsApp user\'s G.711 offer is passed '
      + 'through under either policy',
  }),
  PBX_NO_ANSWER_TIMEOUT_S: setting({
    default: '25', parse: integer(1, 55),
    doc: 'give up ringing (CANCEL, reject on WhatsApp), in seconds: below WhatsApp\'s 30-60 s accept window',
  }),
  PBX_RESPONSE_TIMEOUT_MS: setting({
    default: '4000', parse: integer(100, 32000),
    doc: 'no SIP response at all within this: the target counts as unreachable (also bounds the wait for a final response after our CANCEL)',
  }),
  PBX_OPTIONS_PING_S: setting({
    default: '30', parse: integer(0, 3600),
    doc: 'OPTIONS ping interval per `PBX_TARGET`, in seconds; `0` turns pings off',
  }),

  // Agents calling WhatsApp users (INVITEs from the PBX) ------------------------------------------
  SIP_TRUSTED_SOURCES: setting({
    unset: [] as string[], shown: '(none)',
    parse: listOf(textWhere(isAddressOrCidr, () => 'is not an IP address or CIDR').transform((v, ctx) => {
      if (!tooBroad(v)) return v;
      ctx.addIssue({
        code: 'custom',
        message: `trusts too much of the Internet (shortest prefix: /${MIN_TRUSTED_PREFIX.v4} for IPv4, /${MIN_TRUSTED_PREFIX.v6} for IPv6): `
          + 'list the PBX\'s own addresses, and require SIP_AUTH_USERNAME/SIP_AUTH_PASSWORD',
      });
      return v;
    })),
    doc: 'addresses/CIDRs allowed to place WhatsApp calls, comma-separated: the PBX\'s own (e.g. `10.0.0.10/32`); unset, nobody may. '
      + `Prefixes shorter than /${MIN_TRUSTED_PREFIX.v4} (IPv4) or /${MIN_TRUSTED_PREFIX.v6} (IPv6) are refused`,
  }),
  SIP_AUTH_USERNAME: setting({
    unset: none, shown: '(off)', parse: text,
    doc: 'digest credentials the bridge demands of the PBX\'s INVITEs on top of the address check (with `SIP_AUTH_PASSWORD`): deploy with them, '
      + 'as an address alone can be forged over UDP (the bridge warns at start-up; docs/deploy.md, "Securing agents\' calls out")',
  }),
  SIP_AUTH_PASSWORD: setting({
    unset: none, shown: '(off)', secret: true, parse: text,
    doc: 'the password for `SIP_AUTH_USERNAME`; set both, or neither',
  }),
  SIP_AUTH_REALM: setting({ default: 'wa-sip-bridge', parse: text, doc: 'the realm of the bridge\'s digest challenge' }),
  SIP_INVITE_RATE_PER_SOURCE: setting({
    default: '50', parse: integer(1, 10000),
    doc: 'new INVITEs a second per trusted source address; beyond: 503 + `Retry-After` (untrusted sources get 403 first and are charged to no limit)',
  }),
  SIP_INVITE_BURST_PER_SOURCE: setting({
    default: '100', parse: integer(1, 100000),
    doc: 'the burst above `SIP_INVITE_RATE_PER_SOURCE` one source address may send',
  }),
  SIP_INVITE_RATE: setting({
    default: '100', parse: integer(1, 100000),
    doc: 'new INVITEs a second from all sources together (the PBX\'s peak call rate must fit); beyond: 503 + `Retry-After`',
  }),
  SIP_INVITE_BURST: setting({
    default: '200', parse: integer(1, 1000000),
    doc: 'the burst above `SIP_INVITE_RATE` all sources together may send',
  }),
  MAX_CALLS_IN_PROGRESS: setting({
    default: '500', parse: integer(1, 100000),
    doc: 'calls up (both directions) beyond which a new INVITE gets 503 + `Retry-After`',
  }),
  OUTBOUND_RING_TIMEOUT_S: setting({
    default: '60', parse: integer(5, 300),
    doc: 'give up an agent\'s call WhatsApp has not accepted within this many seconds (480 to the PBX)',
  }),
  PERMISSION_AUTO_REQUEST: setting({
    default: 'off', parse: oneOf(['off', 'interactive']),
    doc: '`interactive`: send a call-permission request when an agent dials someone without permission',
  }),
  PERMISSION_REQUEST_TEXT: setting({
    default: 'We would like to call you about your request. May we?', parse: text,
    doc: 'the text of that request',
  }),

  // Mid-call behaviour ----------------------------------------------------------------------------
  PBX_EARLY_MEDIA: setting({
    default: 'ignore', parse: oneOf(['accept', 'ignore']),
    doc: '`accept`: accept the WhatsApp call on the PBX\'s 183 with SDP, so the caller hears its announcements',
  }),
  PBX_DTMF_MODE: setting({
    default: 'rfc4733', parse: oneOf(['rfc4733', 'info']),
    doc: '`info`: the caller\'s digits go to the PBX as SIP INFO (`application/dtmf-relay`) instead of RFC 4733; needs `RTPENGINE_DTMF_LOG`',
  }),
  TRANSFER_REFUSE_PATTERN: setting({
    default: '^\\+?[0-9]{7,}$', parse: orOff(regExp((s) => new RegExp(s))),
    doc: 'REFER targets whose user part matches are refused with 403: by default anything that looks like a phone number '
      + '(Meta forbids PSTN legs on WhatsApp calls); `off` allows all',
  }),
  TRANSFER_TARGET_PATTERN: setting({
    unset: null, shown: '(only the PBX)', parse: regExp((s) => new RegExp(`^(?:${s})$`, 'i')),
    doc: 'REFER targets allowed besides the configured PBX (`PBX_TARGET` hosts, `SIP_TRUSTED_SOURCES`): a regular expression the whole target '
      + 'URI must match, e.g. `^sip:[0-9]{3,4}@queue\\.example\\.com$`. Whatever it says, never loopback, link-local, unspecified or the '
      + 'bridge\'s own ports (unless the PBX itself is there), and no `maddr`',
  }),
  SIP_MIN_SE_S: setting({
    default: '90', parse: integer(90, 86400),
    doc: 'the shortest session interval accepted (RFC 4028 Min-SE), in seconds',
  }),
  SIP_REQUEST_TIMEOUT_MS: setting({
    default: '5000', parse: integer(100, 32000),
    doc: 'bound on BYE, NOTIFY and INFO the bridge sends in a dialog',
  }),
  MEDIA_HOLD_FILE: setting({
    unset: none, shown: '(generated silence)', parse: text,
    doc: 'audio file rtpengine plays to the WhatsApp user while the PBX sends nothing (a path rtpengine can read)',
  }),
  MEDIA_KEEPALIVE_POLL_MS: setting({
    default: '1000', parse: integer(100, 10000),
    doc: 'how often the PBX leg\'s packet count is read',
  }),
  MEDIA_KEEPALIVE_AFTER_MS: setting({
    default: '8000', parse: integer(200, KEEPALIVE_AFTER_MAX_MS),
    doc: `how long the PBX may send nothing before the hold file starts (at most ${KEEPALIVE_AFTER_MAX_MS}: WhatsApp gives up after 20-30 s)`,
  }),

  // rtpengine and drachtio-server -----------------------------------------------------------------
  DRACHTIO_HOST: setting({ default: '127.0.0.1', parse: text, doc: 'the address of drachtio-server\'s admin connection' }),
  DRACHTIO_PORT: setting({ default: '9022', parse: integer(1, 65535), doc: 'the port of drachtio-server\'s admin connection' }),
  DRACHTIO_SECRET: setting({
    required: true, secret: true, parse: text,
    doc: 'the shared secret of drachtio-server\'s admin connection (no spaces; generate one: `openssl rand -hex 24`)',
  }),
  RTPENGINE_NG: setting({
    required: true,
    parse: listOf(hostPort(() => 'is not host:port'), { atLeastOne: 'names no host:port' }),
    doc: 'comma-separated `host:port` of rtpengine ng listeners (calls are spread over them)',
  }),
  RTPENGINE_DTMF_LOG: setting({
    unset: null, shown: '(off)', parse: hostPort((v) => `must be host:port (got "${v}")`),
    doc: '`host:port` where the bridge receives rtpengine\'s DTMF log (start rtpengine with `--dtmf-log-dest` pointing here)',
  }),
  RTPENGINE_WA_INTERFACE: setting({
    default: 'wa', parse: interfaceName,
    doc: 'the name of rtpengine\'s logical interface facing WhatsApp (`--interface=wa/LOCAL!PUBLIC_IP`), named in every offer and answer',
  }),
  RTPENGINE_PBX_INTERFACE: setting({
    default: 'pbx', parse: interfaceName,
    doc: 'the name of rtpengine\'s logical interface facing the PBX (`--interface=pbx/PRIVATE`)',
  }),
  RTPENGINE_TIMEOUT_MS: setting({ default: '2000', parse: integer(50, 30000), doc: 'bound on each ng command to rtpengine' }),
  RTPENGINE_PING_S: setting({
    default: '5', parse: integer(1, 300),
    doc: 'how often (s) each rtpengine is pinged over ng; one that does not answer gets no new calls until it does',
  }),

  // Shutdown, database, retention, logs, cluster --------------------------------------------------
  SHUTDOWN_DRAIN_S: setting({
    default: '30', parse: integer(0, 3600),
    doc: 'after SIGTERM: not ready, new calls refused, calls in progress may go on this many seconds, then are ended',
  }),
  SHUTDOWN_RETRY_AFTER_S: setting({
    default: '30', parse: integer(1, 3600),
    doc: '`Retry-After` (s) on the 503 that refuses agents\' INVITEs while draining',
  }),
  ENV_FILE: setting({
    unset: none, shown: 'none', parse: text,
    doc: 'outside docker compose: a file of settings the bridge (and `npm run migrate`) reads at start, in .env.example\'s syntax '
      + '(`KEY=VALUE`, `#` comments, quotes; e.g. `/etc/wa-sip-bridge/bridge.env`; or `--env-file <path>`). A variable set in the '
      + 'environment wins over the file\'s. Must be set in the environment itself (docs/deploy-native.md)',
  }),
  DATABASE_URL: setting({
    required: true, secret: true,
    parse: textWhere((v) => /^postgres(ql)?:\/\//.test(v), () => 'must be a postgres:// URL'),
    doc: 'the database: `postgres://user:pass@host:5432/db`',
  }),
  DATABASE_TIMEOUT_MS: setting({ default: '5000', parse: integer(100, 60000), doc: 'bound on each Postgres connection and statement' }),
  DATABASE_STARTUP_WAIT_S: setting({
    default: '60', parse: integer(0, 3600),
    doc: 'how long (s) start-up retries an unreachable Postgres',
  }),
  MIGRATE_ON_START: setting({
    default: 'false', parse: flag,
    doc: '`true`: start-up applies pending migrations (`npm run migrate`), one node at a time (a Postgres advisory lock: a node starting '
      + 'beside another waits, then finds the schema done). `false`: a database schema behind this build stops start-up, asking for `npm run migrate`',
  }),
  CDR_RETRY_S: setting({
    default: '120', parse: integer(1, 3600),
    doc: 'how long (s) a call\'s CDR writes are retried, in order, while Postgres is unreachable (then spilled to `CDR_SPILL_DIR`)',
  }),
  CDR_SPILL_DIR: setting({
    hostDefault: () => path.join(os.tmpdir(), 'wa-sip-bridge-cdr-spill'), shown: '`$TMPDIR/wa-sip-bridge-cdr-spill`', parse: text,
    doc: 'where CDR writes that could not reach Postgres (past `CDR_RETRY_S`, or still queued at shutdown) are kept as JSON lines, per node; '
      + 'the next start replays them into Postgres and removes the file. Holds phone numbers (mode 600): put it on persistent storage. '
      + 'Only writes this file could not take are lost (logged, counted in `wasb_cdr_writes_dropped_total`)',
  }),
  WEBHOOK_EVENTS_RETENTION_DAYS: setting({
    default: '30', parse: integer(0, 36500),
    doc: 'processed webhook events older than this many days are deleted (never unprocessed ones; chat messages the bridge does not act on '
      + 'are stored as id and type only); `0` keeps them ([docs/data-retention.md](docs/data-retention.md))',
  }),
  QUARANTINE_RETENTION_DAYS: setting({
    default: '30', parse: integer(0, 36500),
    doc: 'quarantined webhook bodies last seen longer ago than this are deleted; `0` keeps them',
  }),
  CDR_RETENTION_DAYS: setting({
    default: '0', parse: integer(0, 36500),
    doc: 'ended calls (CDR and timeline) older than this are deleted; `0` (default) keeps them',
  }),
  PERMISSIONS_RETENTION_DAYS: setting({
    default: '90', parse: integer(0, 36500),
    doc: 'call permission replies no longer in force and permission requests older than this are deleted; `0` keeps them',
  }),
  LOG_LEVEL: setting({
    default: 'info', parse: oneOf(LOG_LEVELS),
    doc: `the log level, one of ${LOG_LEVELS.map((l) => `\`${l}\``).join(', ')}; \`debug\` adds each call's state changes. Every line about a call `
      + 'carries `callId`, `wacid` and `sipCallId`, and no secret setting is ever logged',
  }),
  LOG_PHONE_NUMBERS: setting({
    default: 'masked', parse: oneOf(['masked', 'full']),
    doc: 'phone numbers in log lines masked (`+6281****5133`); `full` logs them whole (debugging)',
  }),
  NODE_ID: setting({
    hostDefault: () => os.hostname(), shown: 'hostname', parse: text,
    doc: 'this node\'s name: recorded on each CDR and stored event; must be stable across restarts (a restart ends the calls its previous run '
      + 'left open) and unique among nodes ([docs/cluster.md](docs/cluster.md))',
  }),
  CLUSTER_HEARTBEAT_MS: setting({
    default: '2000', parse: integer(100, 60000),
    doc: 'several nodes: how often each beats in Postgres',
  }),
  CLUSTER_NODE_TIMEOUT_MS: setting({
    default: '15000', parse: integer(500, 600000),
    doc: 'a node silent this long is dead: a survivor ends its calls and replays its unprocessed events',
  }),

  // Admin and reporting API, metrics --------------------------------------------------------------
  ADMIN_API_TOKEN: setting({
    unset: none, shown: '(off)', secret: true, parse: apiToken,
    doc: `enables \`/api\` (\`Authorization: Bearer <token>\`), full access; at least ${MIN_TOKEN_LENGTH} characters. Unset (and no `
      + '`REPORTING_API_TOKENS`): `/api` is off',
  }),
  REPORTING_API_TOKENS: setting({
    unset: [] as string[], shown: '(none)', secret: true, parse: listOf(apiToken, { secret: true }),
    doc: `read-only tokens (comma-separated, each at least ${MIN_TOKEN_LENGTH} characters) for reporting tools: GET on \`/api/calls...\`, `
      + '`/api/calls/live` and `/api/reports/...` only ([docs/reporting.md](docs/reporting.md))',
  }),
  REPORTING_DB_POOL_MAX: setting({
    default: '3', parse: integer(1, 100),
    doc: 'connections of the reporting API\'s own Postgres pool, apart from the calls\' (it never makes calls, webhooks or CDR writes wait)',
  }),
  REPORTING_STATEMENT_TIMEOUT_MS: setting({
    default: '15000', parse: integer(100, 3600000),
    doc: 'Postgres ends any one reporting statement (a summary, an export\'s page) after this long: 503',
  }),
  REPORTING_MAX_CONCURRENT: setting({
    default: '6', parse: integer(1, 10000),
    doc: 'reporting requests served at once, all tokens together (a CSV export counts until it ends); beyond: 429 with `Retry-After`',
  }),
  REPORTING_MAX_CONCURRENT_PER_TOKEN: setting({
    default: '3', parse: integer(1, 10000),
    doc: 'the same, per token (at most `REPORTING_MAX_CONCURRENT`)',
  }),
  REPORTING_EXPORT_STALL_MS: setting({
    default: '30000', parse: integer(100, 3600000),
    doc: 'a CSV export whose client has read nothing for this long is ended (connection closed)',
  }),
  METRICS_TOKEN: setting({
    unset: none, shown: '(open)', secret: true, parse: text,
    doc: '`GET /metrics` then needs `Authorization: Bearer <token>` (the monitoring profile\'s Prometheus sends it); unset, `/metrics` is open '
      + 'to anyone reaching `HTTP_PORT` (keep that port off the internet then)',
  }),
  CALL_QUALITY_MOS_THRESHOLD: setting({
    default: '3.5', parse: decimal(1, 5),
    doc: 'a call whose worst leg\'s estimated MOS (from RTCP, rtpengine `--mos=LQ`) is below this is listed by `GET /api/calls?poor_quality=true`',
  }),

  // Recording -------------------------------------------------------------------------------------
  RECORDING: setting({
    default: 'off', parse: oneOf(['off', 'all']),
    doc: '`all`: record every call from its acceptance, one stereo WAV per call named by its id (the WhatsApp user left, the PBX side right; '
      + '[docs/recording.md](docs/recording.md))',
  }),
  RECORDING_METHOD: setting({
    default: 'pcap', parse: oneOf(['proc', 'pcap']),
    doc: '`pcap` (rtpengine writes pcaps the bridge decodes; works anywhere) or `proc` (rtpengine\'s kernel module and `rtpengine-recording`, '
      + 'the recording-daemon profile, write the WAVs)',
  }),
  RECORDING_RETENTION_DAYS: setting({
    default: '90', parse: integer(0, 36500),
    doc: 'recordings older than this many days are deleted hourly; `0` keeps them',
  }),
  RECORDING_ANNOUNCEMENT_FILE: setting({
    unset: none, shown: '(none)', parse: text,
    doc: 'a WAV (one rtpengine can read) played once to the WhatsApp caller after the agent answers, before either is heard. Whether and how '
      + 'callers are told is your policy',
  }),
  RECORDING_SPOOL_DIR: setting({
    default: '/var/spool/rtpengine', parse: text,
    doc: 'the folder rtpengine records into: its `--recording-dir` (the recording daemon\'s `--spool-dir`), shared with the bridge',
  }),
  RECORDING_DIR: setting({
    default: '/var/lib/rtpengine-recording', parse: text,
    doc: 'where `<call id>.wav` files are kept (the recording daemon\'s `--output-dir`)',
  }),
  MEDIA_DIR: setting({
    hostDefault: () => path.join(os.tmpdir(), 'wa-sip-bridge-media'), shown: '`$TMPDIR/wa-sip-bridge-media`', parse: text,
    doc: 'where the bridge writes its generated silence file (a folder rtpengine can read: shared with it in docker-compose)',
  }),
};

export type SettingName = keyof typeof SETTINGS;

/** Every setting's value, as loadConfig reads it (before the Config is made of them). */
export type SettingValues = { [K in SettingName]: (typeof SETTINGS)[K] extends Setting<infer T> ? T : never };

/** A check across settings: run only when each of `names` was read without a problem. */
export interface CrossCheck {
  readonly names: readonly SettingName[];
  problem(v: SettingValues): string | null;
}

function crossCheck<K extends SettingName>(names: readonly K[], problem: (v: Pick<SettingValues, K>) => string | null): CrossCheck {
  return { names, problem };
}

const bothOrNeither = <K extends SettingName>(a: K, b: K): CrossCheck =>
  crossCheck([a, b], (v) => ((v[a] === null) !== (v[b] === null) ? `${a} and ${b} must be set together` : null));

/** The credentials WA_PROVIDER's account needs when the numbers come from the environment (no NUMBERS_FILE). */
const ENV_ACCOUNT_NEEDS = {
  ycloud: ['YCLOUD_API_KEY', 'YCLOUD_WEBHOOK_SECRET'],
  meta: ['META_ACCESS_TOKEN', 'META_APP_SECRET', 'META_VERIFY_TOKEN'],
} as const satisfies Record<(typeof WA_PROVIDERS)[number], readonly SettingName[]>;

export const CROSS_CHECKS: readonly CrossCheck[] = [
  crossCheck(['NUMBERS_FILE', 'WA_PROVIDER', ...ENV_ACCOUNT_NEEDS.ycloud, ...ENV_ACCOUNT_NEEDS.meta], (v) => {
    if (v.NUMBERS_FILE !== null) return null;
    const missing = ENV_ACCOUNT_NEEDS[v.WA_PROVIDER].filter((n) => v[n] === null);
    return missing.length
      ? `WA_PROVIDER=${v.WA_PROVIDER} needs ${missing.join(', ')} (or set NUMBERS_FILE, whose numbers name their provider accounts)`
      : null;
  }),
  crossCheck(['NUMBERS_FILE', 'WA_PROVIDER', 'META_SIP_HOSTNAME', 'META_SIP_PASSWORD', 'WA_BUSINESS_NUMBER'], (v) => {
    if (v.META_SIP_HOSTNAME === null) return null;
    if (v.NUMBERS_FILE !== null) return 'META_SIP_HOSTNAME is for the environment\'s number: with NUMBERS_FILE, give the number a sip: section there';
    if (v.WA_PROVIDER !== 'meta') return `META_SIP_HOSTNAME puts the number in Meta's SIP mode, which needs WA_PROVIDER=meta (not ${v.WA_PROVIDER})`;
    const missing = (['META_SIP_PASSWORD', 'WA_BUSINESS_NUMBER'] as const).filter((n) => v[n] === null);
    return missing.length ? `META_SIP_HOSTNAME (Meta's SIP mode) needs ${missing.join(', ')}` : null;
  }),
  crossCheck(['NUMBERS_FILE', 'PBX_TARGET'], (v) => (v.NUMBERS_FILE === null && v.PBX_TARGET.length === 0
    ? 'PBX_TARGET is required (or set NUMBERS_FILE, whose numbers have their own PBX targets)'
    : null)),
  crossCheck(['PUBLIC_IP', 'ALLOW_PRIVATE_PUBLIC_IP'], (v) => (isNonPublicAddress(v.PUBLIC_IP) && !v.ALLOW_PRIVATE_PUBLIC_IP
    ? `PUBLIC_IP is ${v.PUBLIC_IP}, which WhatsApp cannot reach: set it to this host's public address `
      + '(behind 1:1 NAT, the elastic/external IP), or set ALLOW_PRIVATE_PUBLIC_IP=true in a lab'
    : null)),
  bothOrNeither('PBX_AUTH_USERNAME', 'PBX_AUTH_PASSWORD'),
  bothOrNeither('SIP_AUTH_USERNAME', 'SIP_AUTH_PASSWORD'),
  crossCheck(['PBX_DTMF_MODE', 'RTPENGINE_DTMF_LOG'], (v) => (v.PBX_DTMF_MODE === 'info' && !v.RTPENGINE_DTMF_LOG
    ? 'PBX_DTMF_MODE=info needs RTPENGINE_DTMF_LOG (the bridge learns the digits from rtpengine\'s DTMF log)'
    : null)),
  crossCheck(['ADMIN_API_TOKEN', 'REPORTING_API_TOKENS'], (v) => (v.ADMIN_API_TOKEN !== null && v.REPORTING_API_TOKENS.includes(v.ADMIN_API_TOKEN)
    ? 'REPORTING_API_TOKENS must not contain ADMIN_API_TOKEN'
    : null)),
  crossCheck(['REPORTING_MAX_CONCURRENT', 'REPORTING_MAX_CONCURRENT_PER_TOKEN'], (v) => (v.REPORTING_MAX_CONCURRENT_PER_TOKEN > v.REPORTING_MAX_CONCURRENT
    ? 'REPORTING_MAX_CONCURRENT_PER_TOKEN must not exceed REPORTING_MAX_CONCURRENT'
    : null)),
];

/**
 * Variables code under src/ reads that are not settings of the bridge, and why (test/unit/config-docs.test.ts
 * fails on a variable read in src/ that is neither here nor in SETTINGS).
 */
export const NOT_SETTINGS: Readonly<Record<string, string>> = {
  PATH: 'where the sandbox looks for rtpengine and drachtio-server',
  DRACHTIO_BIN: 'the sandbox: drachtio-server\'s path when it is not on PATH (docs/sandbox.md)',
  RTPENGINE_BIN: 'the sandbox: rtpengine\'s path when it is not on PATH (docs/sandbox.md)',
  WASB_RTPENGINE_LOG: 'the sandbox and the tests: the log level of the rtpengine they start',
  SANDBOX_HOST: 'the sandbox\'s own setting, its --listen address (docs/sandbox.md)',
  SANDBOX_SIP_ADDRESS: 'the sandbox\'s own setting (docs/sandbox.md)',
  SANDBOX_SIP_PORT: 'the sandbox\'s own setting (docs/sandbox.md)',
  SANDBOX_META_SIP_PORT: 'the sandbox\'s own setting, with --provider meta-sip (docs/sandbox.md)',
  SANDBOX_USER_NUMBER: 'the sandbox\'s own setting (docs/sandbox.md)',
  SANDBOX_BUSINESS_NAME: 'the sandbox\'s own setting (docs/sandbox.md)',
  WEBHOOK_DOMAIN: 'docker compose\'s (the Caddy front\'s domain); `npm run doctor` checks https://WEBHOOK_DOMAIN when PUBLIC_WEBHOOK_URL is unset (docs/doctor.md)',
  NODE_EXTRA_CA_CERTS: 'Node\'s own (extra CAs); `npm run preflight` also checks chains against them, as against its --ca (docs/meta-sip.md)',
};

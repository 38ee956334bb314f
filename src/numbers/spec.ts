import { MetaSipMode } from '../calls/numbers-port';
import { CodecPolicy } from '../config/codec-policy';

/**
 * The business numbers as read, before anything is built of them: what NUMBERS_FILE (numbers-file.ts) or
 * the environment (env-numbers.ts) says, checked, with every secret resolved. directory.ts makes the
 * routes and provider adapters of it.
 */
export interface NumbersSpec {
  accounts: AccountSpec[];
  numbers: NumberSpec[];
}

/** A provider account: its name is its webhook path (POST /webhooks/<name>). */
export type AccountSpec =
  | {
    kind: 'ycloud'; name: string; apiKey: string; webhookSecret: string; apiBaseUrl: string; timeoutMs: number;
    webhookToleranceSeconds: number;
  }
  | {
    kind: 'meta'; name: string; accessToken: string; appSecret: string; verifyToken: string; apiBaseUrl: string;
    /** `Authorization` carries `Bearer <token>`; any other header the token as is. */
    authHeader: string; timeoutMs: number;
  };

export interface NumberSpec {
  name: string;
  /** E.164; null only for the environment's number when WA_BUSINESS_NUMBER is unset (learnt from the webhooks). */
  number: string | null;
  /** null only for the environment's number when WA_PHONE_ID is unset (its catch-all takes any). */
  phoneId: string | null;
  wabaId: string | null;
  /** The provider account's name (an AccountSpec's). */
  account: string;
  /** `auth`: digest credentials for this PBX's challenges (null: the bridge's PBX_AUTH_*, if any). */
  pbx: { targets: string[]; requestUser: string | null; codecs: string[]; auth: { username: string; password: string } | null };
  codecPolicy: CodecPolicy;
  recording: boolean;
  /** Takes its provider's webhooks for phone ids no number names. */
  catchAll: boolean;
  /** The number agents call from when their INVITE names none. */
  agentDefault: boolean;
  /** Meta's native SIP carries its calls (a number on a Meta account only); null: the provider's API does. */
  sip: MetaSipMode | null;
}

/** What a number or account the file says nothing about takes: the bridge's settings (their defaults). */
export interface NumberDefaults {
  ycloud: { apiBaseUrl: string; timeoutMs: number; webhookToleranceSeconds: number };
  meta: { apiBaseUrl: string; authHeader: string; timeoutMs: number };
  pbxCodecs: string[];
  /** PBX_AUTH_USERNAME / PBX_AUTH_PASSWORD. */
  pbxAuth: { username: string; password: string } | null;
  codecPolicy: CodecPolicy;
  recording: boolean;
}

import crypto from 'node:crypto';

/** Identifiers Meta's SIP gateway puts in its headers. */

/** A call id in Meta's style: `wacid.` and base64 (Meta's start with `HBgL`, a serialized prefix). */
export function newWacid(): string {
  return `wacid.HBgL${crypto.randomBytes(36).toString('base64').replace(/=+$/, '')}`;
}

// ITU-T E.164 country calling codes of one and two digits; every other code has three.
const ONE = new Set(['1', '7']);
const TWO = new Set([
  '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47', '48', '49',
  '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65', '66', '81', '82', '84',
  '86', '90', '91', '92', '93', '94', '95', '98',
]);

/** The country calling code of an E.164 number (`x-wa-meta-country-code`): "+6281234567890" -> "62". */
export function countryCodeOf(e164: string): string {
  const d = e164.replace(/^\+/, '');
  if (ONE.has(d.slice(0, 1))) return d.slice(0, 1);
  if (TWO.has(d.slice(0, 2))) return d.slice(0, 2);
  return d.slice(0, 3);
}

/** Digits only, no '+'. */
export const digitsOf = (e164: string): string => e164.replace(/^\+/, '');

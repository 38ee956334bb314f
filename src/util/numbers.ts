/**
 * Normalizes a dialled or reported number to E.164 ("+<digits>"): strips visual separators, "tel:",
 * and an international "00" prefix. Returns null when what is left is not a plausible number.
 */
export function normalizeE164(raw: string): string | null {
  let s = raw.trim().replace(/^tel:/i, '').replace(/[\s().-]/g, '');
  if (s.startsWith('00')) s = `+${s.slice(2)}`;
  if (!s.startsWith('+')) s = `+${s}`;
  return /^\+[1-9]\d{6,14}$/.test(s) ? s : null;
}

/**
 * A business-scoped user id (BSUID), how WhatsApp names a user who hides their number: a two-letter
 * country code, a period, up to 128 letters and digits (or `CC.ENT.digits`, a parent BSUID). Also a
 * valid SIP user part, so the PBX sees it in the From and dials it back as it is.
 */
export const BSUID = /^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$/;

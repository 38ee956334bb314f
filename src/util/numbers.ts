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

import { CALL_COLUMNS, CallRow, Column } from './columns';

/**
 * CSV as RFC 4180 has it: CRLF line ends, a header row, fields quoted when they hold a comma, a quote,
 * CR or LF (quotes doubled inside). Timestamps are ISO 8601 UTC, empty fields are NULLs.
 */

/** What a spreadsheet may take for the start of a formula (OWASP: CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/;
/** A plain signed number (an E.164 number, a negative value) is not a formula whatever its sign. */
const PLAIN_NUMBER = /^[+-]?\d+(?:\.\d+)?$/;

/**
 * A text value as a spreadsheet must see it: one that starts with = + - @, a tab or a CR gets a
 * single quote in front (OWASP's advice), so `=HYPERLINK(...)` in an agent's name or a codec is shown,
 * never run. Plain numbers such as +6281361905133 are left as they are.
 */
export function neutraliseFormula(v: string): string {
  return FORMULA_START.test(v) && !PLAIN_NUMBER.test(v) ? `'${v}` : v;
}

export function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** The text of one value in a CSV field (before quoting). */
function csvValue(v: CallRow[keyof CallRow]): string {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

export function csvLine(values: readonly string[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

export function csvHeader(columns: readonly Column[] = CALL_COLUMNS): string {
  return csvLine(columns.map((c) => c.name));
}

/**
 * Rows as CSV lines (a plain loop: an export formats hundreds of thousands of rows). Values of text
 * columns go through neutraliseFormula.
 */
export function csvRows(rows: readonly CallRow[], columns: readonly Column[] = CALL_COLUMNS): string {
  let out = '';
  for (const r of rows) {
    for (let i = 0; i < columns.length; i++) {
      if (i > 0) out += ',';
      const c = columns[i]!;
      const v = r[c.name];
      out += typeof v === 'string' ? csvField(c.kind === 'text' ? neutraliseFormula(v) : v) : csvValue(v);
    }
    out += '\r\n';
  }
  return out;
}

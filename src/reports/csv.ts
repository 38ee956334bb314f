import { CALL_COLUMNS, CallRow, Column } from './columns';

/**
 * CSV as RFC 4180 has it: CRLF line ends, a header row, fields quoted when they hold a comma, a quote,
 * CR or LF (quotes doubled inside). Timestamps are ISO 8601 UTC, empty fields are NULLs.
 */

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

/** Rows as CSV lines (a plain loop: an export formats hundreds of thousands of rows). */
export function csvRows(rows: readonly CallRow[], columns: readonly Column[] = CALL_COLUMNS): string {
  let out = '';
  for (const r of rows) {
    for (let i = 0; i < columns.length; i++) {
      if (i > 0) out += ',';
      const v = r[columns[i]!.name];
      out += typeof v === 'string' ? csvField(v) : csvValue(v);
    }
    out += '\r\n';
  }
  return out;
}

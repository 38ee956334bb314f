/**
 * The preflight's findings: one line per check, each `ok`, `warn` (works, but look), `fail` (Meta will
 * refuse or fail: says what is wrong and what to do) or `skip` (could not be checked here, and why).
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  /** What was checked, short and fixed ("certificate name", "SIP OPTIONS"): tests and scripts match on it. */
  check: string;
  status: CheckStatus;
  /** What was found; for a fail, what is wrong and what to do. */
  detail: string;
}

export const ok = (check: string, detail: string): CheckResult => ({ check, status: 'ok', detail });
export const warn = (check: string, detail: string): CheckResult => ({ check, status: 'warn', detail });
export const failed = (check: string, detail: string): CheckResult => ({ check, status: 'fail', detail });
export const skipped = (check: string, detail: string): CheckResult => ({ check, status: 'skip', detail });

const LABEL: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/** A titled block of check lines, as the preflight command prints it. */
export function formatSection(title: string, results: readonly CheckResult[]): string {
  const width = Math.max(0, ...results.map((r) => r.check.length));
  return [title, ...results.map((r) => `  ${LABEL[r.status]}  ${r.check.padEnd(width)}  ${r.detail}`)].join('\n');
}

/** All passed: nothing failed (warnings and skipped checks do not fail the preflight). */
export function allPassed(results: readonly CheckResult[]): boolean {
  return results.every((r) => r.status !== 'fail');
}

import { CheckResult, failed } from '../preflight/report';

/**
 * One block of the doctor's report: a title ("provider account ycloud-main") and its check lines, in the
 * order an operator fixes them. Each check is a function of its own, bounded in time and isolated: one
 * that throws or hangs becomes a FAIL line of its own and the others still run.
 */
export interface Section {
  title: string;
  results: CheckResult[];
}

/**
 * Runs `run` within `timeoutMs`: its results, or, when it throws or does not finish, one FAIL line named
 * `check` saying so. The work left running after a timeout is the caller's to clean up (each check
 * bounds its own I/O too; this is the backstop).
 */
export async function bounded(check: string, timeoutMs: number, run: () => Promise<CheckResult[]>): Promise<CheckResult[]> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<CheckResult[]>((resolve) => {
    timer = setTimeout(() => resolve([failed(check, `did not finish within ${timeoutMs} ms (--timeout-ms)`)]), timeoutMs);
  });
  try {
    return await Promise.race([run().catch((err: unknown) => [failed(check, `the check itself failed: ${messageOf(err)}`)]), limit]);
  } finally {
    clearTimeout(timer);
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A Node system error's code (ECONNREFUSED, ENOTFOUND, CERT_HAS_EXPIRED), looking through `cause`. */
export function errorCode(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return null;
}

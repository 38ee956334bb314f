import { CdrStore } from '../cdr/store';
import { isTransientDbError } from '../cdr/write-safety';
import { Logger } from '../log';
import { TimeoutError, withTimeout } from '../sip/dialog-requests';

/**
 * Whether a connect may be bridged (decided in parallel with its media set-up, before anything reaches
 * the provider): 'go'; 'duplicate' (already bridged: nothing of it is kept); 'ended' (its terminate came
 * first: the call is recorded as hung up by the caller); `unchecked` (Postgres could not say, even
 * retried: the call is rejected at WhatsApp and its CDR says why, rather than dropped unseen).
 */
export type Admission = 'go' | 'duplicate' | 'ended' | { unchecked: string };

/**
 * How long a check that failed for a passing reason (Postgres slow, unreachable) is retried after its
 * first attempt (itself bounded by DATABASE_TIMEOUT_MS); the caller hears ringing meanwhile.
 */
const RETRY_MS = 3000;
const FIRST_BACKOFF_MS = 100;

/**
 * A WhatsApp user's connect against what Postgres knows of its wacid: 'go' when no call for it exists
 * and no terminate for it is stored; 'duplicate' for a repeated connect (a redelivery after a restart,
 * another event id, or one another node has taken); 'ended' when its terminate came first. A
 * redelivery while the first is in flight on this node never gets here (the pipeline's first-seen
 * check). It does not wait for the event's own durable write (the 200 to the provider does): that
 * write is the slowest step of a set-up, and the call row answers the same question.
 *
 * When Postgres cannot tell (slow, unreachable), the check is retried for RETRY_MS; past that the
 * answer is `unchecked`. The event's 200 has usually gone out already (its write is a different
 * statement, and may well have worked), so dropping the connect silently would lose the call.
 */
export async function admitConnect(cdr: Pick<CdrStore, 'wacidHistory'>, wacid: string, terminatedHere: boolean, timeoutMs: number, log: Logger): Promise<Admission> {
  const started = Date.now();
  const deadline = started + timeoutMs + RETRY_MS;
  let backoff = FIRST_BACKOFF_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      const bound = Math.min(timeoutMs, Math.max(1, deadline - Date.now()));
      const history = await withTimeout(cdr.wacidHistory(wacid), bound, `no answer within ${bound} ms`);
      if (attempt > 1) log.info({ wacid, attempts: attempt }, 'connect checked against Postgres after retrying');
      if (history.call) return 'duplicate';
      return terminatedHere || history.terminated ? 'ended' : 'go';
    } catch (err) {
      const message = (err as Error).message;
      const retry = err instanceof TimeoutError || isTransientDbError(err);
      if (!retry || Date.now() + backoff >= deadline) {
        log.error({ err, wacid, attempts: attempt, forMs: Date.now() - started }, 'cannot check the connect against Postgres: rejecting the call at WhatsApp');
        return { unchecked: `admission check failed: Postgres did not answer whether the call was already taken (${attempt} attempts in ${Date.now() - started} ms: ${message.slice(0, 200)})` };
      }
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 1000);
    }
  }
}

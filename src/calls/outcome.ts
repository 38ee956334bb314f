import { Outcome } from '../cdr/models';
import { PbxFailure } from '../sip/pbx-leg';

/** How a failed INVITE toward the PBX is reported in the CDR. */
export function outcomeOfPbxFailure(f: PbxFailure): Outcome {
  switch (f.kind) {
    case 'no-response': return 'unreachable';
    case 'cancelled': return 'caller_hangup';
    case 'error': return 'failed';
    case 'status':
      if (f.status === 486 || f.status === 600) return 'busy';
      if (f.status === 480 || f.status === 487) return 'no_answer';
      if (f.status === 403 || f.status === 603) return 'rejected';
      // A 408/503 before any provisional comes from the transport layer (no route, nothing listening).
      if (!f.hadProvisional && (f.status === 408 || f.status === 502 || f.status === 503 || f.status === 504)) return 'unreachable';
      if (f.status === 408) return 'no_answer';
      return 'failed';
  }
}

/** Failures worth trying the next PBX target for: the target itself was unreachable. */
export function shouldFailover(f: PbxFailure): boolean {
  return outcomeOfPbxFailure(f) === 'unreachable';
}

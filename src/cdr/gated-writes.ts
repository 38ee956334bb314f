import { CdrWrites } from './call-recorder';

/**
 * A call's CDR writes held until `keep` settles: then made in order if it is true, all dropped if not
 * (a connect set up in parallel with its admission that turned out to be a duplicate leaves no row).
 * The store's spill is offered only once the verdict is to keep them: writes of a call that may yet
 * turn out a duplicate are never spilled.
 */
export function gatedWrites(store: CdrWrites, keep: Promise<boolean>): CdrWrites {
  let kept = false;
  // Released a turn after the verdict: the call's own step it gated (the pre-accept) goes out first.
  const ok = keep.catch(() => false).then((v) => new Promise<boolean>((resolve) => setImmediate(() => resolve((kept = v)))));
  return {
    createCall: async (...a) => { if (await ok) await store.createCall(...a); },
    updateCall: async (...a) => { if (await ok) await store.updateCall(...a); },
    addEvent: async (...a) => { if (await ok) await store.addEvent(...a); },
    get spill() {
      return kept ? (store.spill ?? null) : null;
    },
  };
}

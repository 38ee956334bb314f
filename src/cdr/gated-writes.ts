import { CdrWrites } from './call-recorder';

/**
 * A call's CDR writes held until `keep` settles: then made in order if it is true, all dropped if not
 * (a connect set up in parallel with its admission that turned out to be a duplicate leaves no row).
 */
export function gatedWrites(store: CdrWrites, keep: Promise<boolean>): CdrWrites {
  // Released a turn after the verdict: the call's own step it gated (the pre-accept) goes out first.
  const ok = keep.catch(() => false).then((v) => new Promise<boolean>((resolve) => setImmediate(() => resolve(v))));
  return {
    createCall: async (...a) => { if (await ok) await store.createCall(...a); },
    updateCall: async (...a) => { if (await ok) await store.updateCall(...a); },
    addEvent: async (...a) => { if (await ok) await store.addEvent(...a); },
  };
}

/**
 * Per-key lanes: work for one key (a wacid) is routed one after another, in the order it came; only
 * the routing waits in line, never the work it starts. An entry lives while work is in line.
 */
export class Lanes {
  private readonly lanes = new Map<string, Promise<void>>();

  /**
   * Runs `route` after everything routed before for `key` (null: no lane), then awaits the work it
   * handed back (which does not hold up the lane).
   */
  async run(key: string | null, route: () => Promise<() => Promise<void>>): Promise<void> {
    if (key === null) return (await route())();
    const routed = (this.lanes.get(key) ?? Promise.resolve()).then(route);
    const lane = routed.then(() => undefined, () => undefined);
    this.lanes.set(key, lane);
    void lane.then(() => {
      if (this.lanes.get(key) === lane) this.lanes.delete(key);
    });
    await (await routed)();
  }
}

/** Work under way, handed back by a route so that its lane does not wait for it. */
export function started(work: Promise<void>): () => Promise<void> {
  work.catch(() => undefined); // awaited by Lanes.run; never left unhandled meanwhile
  return () => work;
}

/** Nothing to wait for. */
export const nothing = async (): Promise<void> => undefined;

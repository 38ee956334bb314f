import { NodeRecords } from '../cdr/node-records';
import { Logger } from '../log';
import { Periodic } from '../util/periodic';

export interface NodeRegistryOptions {
  nodeId: string;
  heartbeatMs: number;
  /** A node whose heartbeat is older than this is dead: a survivor takes over its calls. */
  deadAfterMs: number;
}

/**
 * Each node's heartbeat in bridge_nodes, and the detection of nodes that went silent. Taking over a
 * dead node is claimed with one conditional UPDATE, so exactly one survivor does it.
 */
export class NodeRegistry {
  private readonly beats: Periodic;

  constructor(
    private readonly records: NodeRecords,
    private readonly o: NodeRegistryOptions,
    private readonly log: Logger,
    /** Called once per dead node this node has claimed. */
    private readonly onDead: (nodeId: string) => Promise<void>,
  ) {
    this.beats = new Periodic(() => this.beat(), o.heartbeatMs);
  }

  /** Registers this node (a restart clears an earlier claim on it) and starts beating. */
  async start(): Promise<void> {
    await this.records.register(this.o.nodeId);
    void this.beats.start();
  }

  /** Stops beating; a clean stop is marked so survivors do not treat it as a crash. */
  async stop(clean: boolean): Promise<void> {
    await this.beats.stop();
    if (!clean) return;
    await this.records.markStopped(this.o.nodeId);
  }

  private async beat(): Promise<void> {
    try {
      await this.records.heartbeat(this.o.nodeId);
      const dead = await this.records.claimDead(this.o.nodeId, this.o.deadAfterMs);
      for (const node_id of dead) {
        this.log.warn({ node: node_id }, 'bridge node stopped beating: taking over its calls and events');
        await this.onDead(node_id).catch((err: unknown) => this.log.error({ err, node: node_id }, 'taking over a dead node failed'));
      }
    } catch (err) {
      this.log.warn({ err }, 'node heartbeat failed (Postgres unreachable?)');
    }
  }
}

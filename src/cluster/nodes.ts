import { QueryTypes, Sequelize } from 'sequelize';
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
    private readonly sequelize: Sequelize,
    private readonly o: NodeRegistryOptions,
    private readonly log: Logger,
    /** Called once per dead node this node has claimed. */
    private readonly onDead: (nodeId: string) => Promise<void>,
  ) {
    this.beats = new Periodic(() => this.beat(), o.heartbeatMs);
  }

  /** Registers this node (a restart clears an earlier claim on it) and starts beating. */
  async start(): Promise<void> {
    await this.sequelize.query(
      `INSERT INTO bridge_nodes (node_id, started_at, heartbeat_at) VALUES (:id, now(), now())
       ON CONFLICT (node_id) DO UPDATE SET started_at = now(), heartbeat_at = now(), stopped_at = NULL, reaped_by = NULL, reaped_at = NULL`,
      { replacements: { id: this.o.nodeId }, type: QueryTypes.INSERT },
    );
    void this.beats.start();
  }

  /** Stops beating; a clean stop is marked so survivors do not treat it as a crash. */
  async stop(clean: boolean): Promise<void> {
    await this.beats.stop();
    if (!clean) return;
    await this.sequelize.query('UPDATE bridge_nodes SET stopped_at = now() WHERE node_id = :id', { replacements: { id: this.o.nodeId }, type: QueryTypes.UPDATE });
  }

  private async beat(): Promise<void> {
    try {
      await this.sequelize.query('UPDATE bridge_nodes SET heartbeat_at = now() WHERE node_id = :id', { replacements: { id: this.o.nodeId }, type: QueryTypes.UPDATE });
      const dead = await this.sequelize.query<{ node_id: string }>(
        `UPDATE bridge_nodes SET reaped_by = :id, reaped_at = now()
         WHERE node_id <> :id AND reaped_by IS NULL AND stopped_at IS NULL AND heartbeat_at < now() - make_interval(secs => :s)
         RETURNING node_id`,
        { replacements: { id: this.o.nodeId, s: this.o.deadAfterMs / 1000 }, type: QueryTypes.SELECT },
      );
      for (const { node_id } of dead) {
        this.log.warn({ node: node_id }, 'bridge node stopped beating: taking over its calls and events');
        await this.onDead(node_id).catch((err: unknown) => this.log.error({ err, node: node_id }, 'taking over a dead node failed'));
      }
    } catch (err) {
      this.log.warn({ err }, 'node heartbeat failed (Postgres unreachable?)');
    }
  }
}

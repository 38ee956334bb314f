import { QueryTypes, Sequelize } from 'sequelize';

/** The statements of the nodes' heartbeats (bridge_nodes); the timing is NodeRegistry's. */
export class NodeRecords {
  constructor(private readonly sequelize: Sequelize) {}

  /** Registers a node as started now (a restart clears an earlier claim on it). */
  async register(nodeId: string): Promise<void> {
    await this.sequelize.query(
      `INSERT INTO bridge_nodes (node_id, started_at, heartbeat_at) VALUES (:id, now(), now())
       ON CONFLICT (node_id) DO UPDATE SET started_at = now(), heartbeat_at = now(), stopped_at = NULL, reaped_by = NULL, reaped_at = NULL`,
      { replacements: { id: nodeId }, type: QueryTypes.INSERT },
    );
  }

  /** Marks a clean stop, so survivors do not treat the node as crashed. */
  async markStopped(nodeId: string): Promise<void> {
    await this.sequelize.query('UPDATE bridge_nodes SET stopped_at = now() WHERE node_id = :id', { replacements: { id: nodeId }, type: QueryTypes.UPDATE });
  }

  async heartbeat(nodeId: string): Promise<void> {
    await this.sequelize.query('UPDATE bridge_nodes SET heartbeat_at = now() WHERE node_id = :id', { replacements: { id: nodeId }, type: QueryTypes.UPDATE });
  }

  /**
   * Claims for `nodeId` every other node silent for `deadAfterMs` that stopped uncleanly and nobody
   * has claimed: one conditional UPDATE, so exactly one survivor gets each. Returns the claimed ids.
   */
  async claimDead(nodeId: string, deadAfterMs: number): Promise<string[]> {
    const dead = await this.sequelize.query<{ node_id: string }>(
      `UPDATE bridge_nodes SET reaped_by = :id, reaped_at = now()
       WHERE node_id <> :id AND reaped_by IS NULL AND stopped_at IS NULL AND heartbeat_at < now() - make_interval(secs => :s)
       RETURNING node_id`,
      { replacements: { id: nodeId, s: deadAfterMs / 1000 }, type: QueryTypes.SELECT },
    );
    return dead.map((r) => r.node_id);
  }
}

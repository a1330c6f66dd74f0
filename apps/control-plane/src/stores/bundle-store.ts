import type { Database } from '@runt/sql';

/** What the API says about a stored bundle. */
export interface BundleInfo {
  sha256: string;
  size_bytes: number;
}

/**
 * Content-addressed file bundles (tar or tar.gz) kept in the database as `bytea`, so every
 * replica on one Postgres serves them and a backup holds them. The caller has verified the
 * digest; storing the same digest twice is a no-op.
 */
export class BundleStore {
  constructor(private readonly db: Database) {}

  /**
   * Stores verified bytes under their sha256 (idempotent).
   *
   * @example
   * await bundles.put(sha256Hex(bytes), bytes);
   */
  async put(sha256: string, bytes: Uint8Array): Promise<BundleInfo> {
    await this.db.query(
      'insert into bundles (sha256, size_bytes, data) values ($1, $2, $3) on conflict (sha256) do nothing',
      [sha256, bytes.byteLength, bytes],
    );
    return { sha256, size_bytes: bytes.byteLength };
  }

  /** Size of a stored bundle, or undefined. */
  async info(sha256: string): Promise<BundleInfo | undefined> {
    const r = await this.db.query<{ size_bytes: number | string }>(
      'select size_bytes from bundles where sha256 = $1',
      [sha256],
    );
    return r.rows[0] ? { sha256, size_bytes: Number(r.rows[0].size_bytes) } : undefined;
  }

  /** The bytes of a stored bundle, or undefined. */
  async get(sha256: string): Promise<Uint8Array | undefined> {
    const r = await this.db.query<{ data: Uint8Array }>('select data from bundles where sha256 = $1', [
      sha256,
    ]);
    return r.rows[0]?.data;
  }

  /** May this workstation download the bundle? Only while it has an active run that uses it. */
  async usedByWorkstation(sha256: string, workstationId: string): Promise<boolean> {
    const r = await this.db.query(
      `select 1 from runs where bundle_sha256 = $1 and workstation_id = $2 and status in ('offered', 'accepted', 'running') limit 1`,
      [sha256, workstationId],
    );
    return r.rows.length > 0;
  }
}

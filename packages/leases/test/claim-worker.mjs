// A claimer process for the multi-process test: loops claim attempts on one resource against a
// Postgres database and prints what it held as JSON. Imports the BUILT package (dist/).
import { openPostgres } from '@runt/sql';
import { createSqlLeaseStore, isLeaseError } from '../dist/index.js';

const { DATABASE_URL, RESOURCE, HOLDER, ATTEMPTS, TTL_MS } = process.env;
const db = await openPostgres({ url: DATABASE_URL, max: 1 });
const store = createSqlLeaseStore(db);
const ttl = Number(TTL_MS);
const events = [];
let conflicts = 0;
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const record = (grant, end) =>
  events.push({
    holder: HOLDER,
    token: grant.fencingToken,
    acquiredAt: grant.acquiredAt.getTime(),
    end: end.getTime(),
  });

for (let i = 0; i < Number(ATTEMPTS); i++) {
  try {
    const grant = await store.claim(RESOURCE, HOLDER, ttl);
    record(grant, grant.expiresAt);
    const roll = Math.random();
    if (roll < 0.3) {
      const renewed = await store.renew(RESOURCE, HOLDER, grant.fencingToken, ttl).catch((e) => {
        if (isLeaseError(e, 'runner-lease-conflict')) return undefined;
        throw e;
      });
      if (renewed) record(grant, renewed.expiresAt);
    }
    if (roll < 0.7) {
      const released = await store.release(RESOURCE, HOLDER, grant.fencingToken);
      if (released) record(grant, released.expiresAt);
    }
  } catch (e) {
    if (!isLeaseError(e, 'runner-lease-conflict')) throw e;
    conflicts++;
  }
  await pause(Math.random() * 3);
}
await db.close();
process.stdout.write(JSON.stringify({ holder: HOLDER, conflicts, events }));

/**
 * vitest globalSetup of the PostgreSQL leg of the test matrix: one throwaway cluster for the
 * run, handed to the workers in OXY_TEST_PG; each test makes its own database in it.
 */
import { startPostgres, type Postgres } from './postgres.js';

let pg: Postgres | undefined;

export async function setup(): Promise<void> {
  pg = await startPostgres();
  process.env.OXY_TEST_PG = JSON.stringify(pg.cluster);
}

export async function teardown(): Promise<void> {
  await pg?.stop();
}

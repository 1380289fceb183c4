import { defineConfig } from 'vitest/config';
import { postgresMissing } from './test/helpers/postgres.js';

/**
 * Three legs: every test on SQLite (the default store, QUIC on ngtcp2 on both sides); the tests
 * that exercise the store — its unit tests, the CLI tests that use it, the vnet walkthrough —
 * again on PostgreSQL, in a throwaway cluster the `postgres` project's globalSetup starts
 * (test/helpers/postgres.ts); and the QUIC tests again with quiche on one side or both
 * (`quiche`, `quiche-edge`, `quiche-connector`: see QUIC_LEG).
 * Run one leg with `--project sqlite`, `--project postgres`, `--project quiche`, ….
 */
export const POSTGRES_LEG = [
  'test/unit/store/**/*.test.ts',
  'test/cli/edge-advertise.test.ts',
  'test/cli/error-codes.test.ts',
  'test/cli/route.test.ts',
  'test/cli/race.test.ts',
  'test/cli/tunnel.test.ts',
  'test/cli/vnet.test.ts',
  'test/cli/warp-devices.test.ts',
  'test/cli/store.test.ts',
  'test/e2e/vnets/walkthrough.test.ts',
  'test/e2e/store/**/*.test.ts',
  // edge run --workers on the shared store: the workers' registry and view on PostgreSQL.
  'test/e2e/tunnel/workers.test.ts',
];

/**
 * The QUIC tests again with quiche (ngtcp2 is the default on both sides): `quiche` on both sides,
 * `quiche-edge` with the edge's listener on it (the connector on ngtcp2), `quiche-connector` with
 * the connector's client on it (the edge on ngtcp2). Every pairing must keep interoperating:
 * users run mixed versions.
 */
export const QUIC_LEG = [
  'test/unit/quic/**/*.test.ts',
  'test/e2e/quic/registration.test.ts',
  'test/e2e/quic/nft-loss.test.ts',
  // replies from the address each datagram arrived on, whichever library answers
  'test/e2e/quic/pktinfo-netns.test.ts',
];

/**
 * QUIC tests that choose the library of each side themselves (listenQuic's `impl`, OXY_QUIC_IMPL
 * set in the test): the quiche legs would run the same pairs again, so only `sqlite` runs them.
 */
export const QUIC_PINNED = ['test/unit/quic/ngtcp2-loopback.test.ts', 'test/unit/quic/ngtcp2-aead.test.ts'];

// Without PostgreSQL the leg is left out with a note — unless OXY_REQUIRE_PRIVILEGED_TESTS=1
// (CI), where its globalSetup then fails the run.
const pgMissing = postgresMissing();
const pgLeg = !pgMissing || process.env.OXY_REQUIRE_PRIVILEGED_TESTS === '1';
if (!pgLeg) console.warn(`vitest: skipping the PostgreSQL leg: ${pgMissing}`);

export default defineConfig({
  test: {
    // Every edge a test starts runs in one process, as before `edge run --workers` (whose
    // default is the number of cores): tests of the workers pass --workers themselves.
    env: { OXY_EDGE_WORKERS: '1' },
    // Hang detectors, not speed limits: with files in parallel on a loaded 2-core machine a test
    // that spawns the CLI 15 times takes 5-10 times its idle time (each spawn is ~0.5 s of CPU).
    // Set-up hooks take these too: give one its own timeout only to make it longer.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Network and namespace tests share kernel state; keep files in separate processes.
    pool: 'forks',
    // vitest's default is one worker less than the cores (1 here): most files wait on
    // processes, sockets and timers, so files run 3 at a time.
    maxWorkers: 3,
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'], exclude: ['test/e2e/store/**'] } },
      {
        extends: true,
        test: { name: 'quiche', include: QUIC_LEG, exclude: QUIC_PINNED, env: { OXY_EDGE_WORKERS: '1', OXY_QUIC_IMPL: 'quiche', OXY_QUIC_SERVER_IMPL: 'quiche' } },
      },
      { extends: true, test: { name: 'quiche-edge', include: QUIC_LEG, exclude: QUIC_PINNED, env: { OXY_EDGE_WORKERS: '1', OXY_QUIC_SERVER_IMPL: 'quiche' } } },
      { extends: true, test: { name: 'quiche-connector', include: QUIC_LEG, exclude: QUIC_PINNED, env: { OXY_EDGE_WORKERS: '1', OXY_QUIC_IMPL: 'quiche' } } },
      ...(!pgLeg ? [] : [{
        extends: true,
        test: { name: 'postgres', include: POSTGRES_LEG, env: { OXY_TEST_STORE: 'postgres' }, globalSetup: ['test/helpers/postgres-global.ts'] },
      }]),
    ],
  },
});

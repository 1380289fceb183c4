/** Store administration: `oxyctl store migrate` and `oxyctl store copy`. */
import { copyStore, COPY_TABLES, type CopyCounts } from '../store/copy.js';
import { openDriver, parseStoreUrl } from '../store/index.js';
import { Store } from '../store/index.js';

export interface MigrateResult {
  store: string;
  from: number;
  version: number;
  applied: number;
}

/** Applies pending migrations (opening a store does too; this says what it did). */
export async function migrateStore(url: string): Promise<MigrateResult> {
  const driver = await openDriver(parseStoreUrl(url));
  try {
    const from = await driver.schemaVersion();
    await driver.migrate();
    const version = await driver.schemaVersion();
    return { store: driver.displayUrl, from, version, applied: version - from };
  } finally {
    await driver.close();
  }
}

export interface CopyResult {
  from: string;
  to: string;
  accountTag: string;
  rows: CopyCounts;
}

/** Copies everything from one store into a new, empty one; then checks that counts and ids match. */
export async function copyStores(home: string, fromUrl: string, toUrl: string): Promise<CopyResult> {
  const from = await Store.open({ home, url: fromUrl });
  try {
    const to = await Store.open({ home, url: toUrl });
    try {
      const rows = await copyStore(from.driver, to.driver);
      for (const table of COPY_TABLES) {
        // Rows compared by id (all their columns where a table has no id).
        const ids = async (s: Store) =>
          (await s.driver.all<Record<string, unknown>>(`SELECT * FROM ${table}`))
            .map((r) => ('id' in r ? String(r.id) : JSON.stringify(Object.entries(r).filter(([k]) => k !== 'seq'))))
            .sort()
            .join(',');
        if ((await ids(from)) !== (await ids(to))) throw new Error(`store copy: ${table} differs after the copy`);
      }
      return { from: from.displayUrl, to: to.displayUrl, accountTag: from.accountTag, rows };
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

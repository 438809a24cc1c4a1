import type { Logger } from "../../common/mod.js";
import type { CoordinatorConfig } from "../config.js";
import { PgStore } from "./pg-store.js";
import { SqliteStore } from "./sqlite-store.js";
import type { Store } from "./store.js";

/** The store the config names: PostgreSQL (`store.postgres`), else the SQLite file `database`. */
export async function openStore(config: CoordinatorConfig, log: Logger): Promise<Store> {
  if (!config.postgres) return new SqliteStore(config.database);
  const store = await PgStore.open(
    config.postgres,
    (err) => log.warn("PostgreSQL connection lost; the pool opens another", { error: err }),
    config.id,
  );
  log.info("store: PostgreSQL", { url: config.postgres.url });
  return store;
}

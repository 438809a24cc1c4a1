// The coordinator's public face, for its executable and for tests.

export { startGrpcServer } from "./api/server.js";
export { type CoordinatorConfig, loadCoordinatorConfig, parseCoordinatorConfig } from "./config.js";
export { Coordinator, type CoordinatorOptions } from "./coordinator.js";
export { SqliteStore } from "./store/sqlite-store.js";
export type { Store } from "./store/store.js";

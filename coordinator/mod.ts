// The coordinator's public face, for its executable and for tests.
export { type CoordinatorConfig, loadCoordinatorConfig, parseCoordinatorConfig } from "./config.js";
export { Coordinator, type CoordinatorOptions } from "./coordinator.js";
export { startGrpcServer } from "./grpc-api.js";
export { SqliteStore } from "./store/sqlite-store.js";
export type { Store } from "./store/store.js";

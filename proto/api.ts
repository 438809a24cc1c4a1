// The coordinator's gRPC API (service, client and its messages) with the
// whole wire contract: for the coordinator, the console and tests.
export * from "./gen/dragnet/v1/coordinator.js";
export * from "./mod.js";

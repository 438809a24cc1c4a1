// The wire contract: messages generated from proto/dragnet/v1/*.proto by
// `npm run gen` (ts-proto through buf). Import from here, not from gen/.
// The coordinator's gRPC API is in ./api.ts: the agent never needs it, and
// leaving it out keeps gRPC out of the agent executable.
export * from "./gen/dragnet/v1/agent.js";
export * from "./gen/dragnet/v1/common.js";
export * from "./gen/dragnet/v1/drift.js";
export * from "./gen/dragnet/v1/file.js";
export * from "./gen/dragnet/v1/isolate.js";
export * from "./gen/dragnet/v1/memory.js";
export * from "./gen/dragnet/v1/netstat.js";
export * from "./gen/dragnet/v1/notebook.js";
export * from "./gen/dragnet/v1/process.js";
export * from "./gen/dragnet/v1/respond.js";
export * from "./gen/dragnet/v1/upgrade.js";

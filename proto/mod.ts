// The wire contract: messages generated from proto/dragnet/v1/*.proto by
// `npm run gen` (ts-proto through buf). Import from here, not from gen/.
// The coordinator's gRPC API is in ./api.ts: the agent never needs it, and
// leaving it out keeps gRPC out of the agent executable.
export * from "./gen/wire.js";
export * from "./modules.js";

import type { ModuleHost } from "../../agent/modules/registry.js";
import { silentLogger } from "../../common/mod.js";
import type { Alert } from "../../proto/mod.js";

/** A ModuleHost for a module service run alone (tests, benchmarks): no NATS; alerts go to `onAlert`. */
export function standaloneHost(
  stateDir: string,
  onAlert: (alert: Alert) => void,
  agentId = "agent-1",
  hostname = "host-1",
): ModuleHost {
  return {
    stateDir,
    log: silentLogger,
    natsServers: [],
    lab: false,
    linkDownSince: () => undefined,
    flushed: async () => undefined,
    restart: () => undefined,
    heartbeat: () => undefined,
    self: () => ({ agentId, hostname }),
    alert: onAlert,
    trustKeyring: () => undefined,
  };
}

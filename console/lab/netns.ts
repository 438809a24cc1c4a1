import { spawnSync } from "node:child_process";
import { Codes, DragnetError } from "../../common/mod.js";

// `dragnet lab up --netns`: each lab agent in a network namespace of its own,
// joined by a veth pair to a lab bridge in the machine's namespace. Addresses
// come from 198.18.0.0/15 (reserved for benchmarking, never routed) and the
// namespaces get no default route, so an agent there can reach NATS on the
// bridge and the other lab agents, and nothing beyond the machine. Isolating
// such an agent cuts off only its namespace — rehearsal without risk.

export const LAB_BRIDGE = "dragnetlab0";
/** The bridge's address: NATS listens here, in the machine's own namespace. */
export const LAB_BRIDGE_IP = "198.18.0.1";
const PREFIX_BITS = 24;

export interface LabNetAgent {
  namespace: string;
  address: string;
}

function ip(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) {
    throw new DragnetError(
      Codes.CONFIG,
      `lab --netns: ip ${args.join(" ")} failed: ${(r.stderr || r.error?.message || "").trim()}`,
    );
  }
}

/** The namespace and address of lab agent `index` (1-based). */
export function labNetAgent(index: number): LabNetAgent {
  return { namespace: `dragnet-lab-${String(index).padStart(2, "0")}`, address: `198.18.0.${10 + index}` };
}

/** Makes the bridge and one namespace per agent; refuses without root. */
export function createLabNetwork(agents: number): LabNetAgent[] {
  if (process.getuid?.() !== 0)
    throw new DragnetError(Codes.CONFIG, "lab --netns needs root (it makes network namespaces)");
  if (agents > 200) throw new DragnetError(Codes.PARAMS, "lab --netns: at most 200 agents");
  destroyLabNetwork(agents);
  ip(["link", "add", LAB_BRIDGE, "type", "bridge"]);
  ip(["addr", "add", `${LAB_BRIDGE_IP}/${PREFIX_BITS}`, "dev", LAB_BRIDGE]);
  ip(["link", "set", LAB_BRIDGE, "up"]);
  const made: LabNetAgent[] = [];
  for (let i = 1; i <= agents; i++) {
    const a = labNetAgent(i);
    const outside = `dnlab${i}`;
    const inside = `dnlab${i}p`;
    ip(["netns", "add", a.namespace]);
    ip(["link", "add", outside, "type", "veth", "peer", "name", inside]);
    ip(["link", "set", inside, "netns", a.namespace]);
    ip(["link", "set", outside, "master", LAB_BRIDGE, "up"]);
    ip(["-n", a.namespace, "addr", "add", `${a.address}/${PREFIX_BITS}`, "dev", inside]);
    ip(["-n", a.namespace, "link", "set", inside, "up"]);
    ip(["-n", a.namespace, "link", "set", "lo", "up"]);
    made.push(a);
  }
  return made;
}

/** Removes the namespaces (their veth pairs go with them) and the bridge; what is not there is skipped. */
export function destroyLabNetwork(agents: number): void {
  for (let i = 1; i <= Math.max(agents, 1); i++) spawnSync("ip", ["netns", "del", labNetAgent(i).namespace]);
  spawnSync("ip", ["link", "del", LAB_BRIDGE]);
}

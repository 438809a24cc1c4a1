import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coSign, newId, signAction } from "../../common/mod.js";
import {
  type ActionBody,
  AgentStatus,
  CommandStatus,
  type IsolateParams,
  type IsolateResult,
  type Operation,
  type OperationResult,
  ProcessParams,
} from "../../proto/api.js";
import { collectResults } from "../helpers/actions.js";
import { AGENT_EXE, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Isolation inside network namespaces this test makes: a "host" namespace
// runs the real agent executable and reaches nats-server in the root
// namespace over a veth pair (198.18.1.0/30) and a "peer" namespace over
// another (198.18.2.0/30). 198.18.0.0/15 is reserved for benchmarking and
// the namespaces have no default route: no packet can leave the machine.

const tag = String(process.pid % 100000);
const HOST_NS = `dn-host-${tag}`;
const PEER_NS = `dn-peer-${tag}`;
const ROOT_IP = "198.18.1.1";
const HOST_IP = "198.18.1.2";
const HOST_PEER_IP = "198.18.2.1";
const PEER_IP = "198.18.2.2";

function sh(args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
const inHost = (args: string[]) =>
  spawnSync("ip", ["netns", "exec", HOST_NS, ...args], { encoding: "utf8", timeout: 10_000 });

/** Why namespaces cannot be made here, or undefined when they can. */
function whyNot(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const cmd of ["ip", "nft", "ping"]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0)
      return `${cmd} is not installed (.ci/run installs it)`;
  }
  const probe = `dn-probe-${tag}`;
  const made = spawnSync("ip", ["netns", "add", probe]);
  spawnSync("ip", ["netns", "del", probe]);
  return made.status === 0 ? undefined : `cannot make a network namespace: ${made.stderr}`;
}
const skip = whyNot();
if (skip) console.warn(`isolation tests skipped: ${skip}`);

/** A TCP connect from the host namespace to the peer: "ok" or why not, within 1.5 s. */
function connectFromHost(port: number): string {
  const r = inHost([
    process.execPath,
    "-e",
    `const s=require("net").connect(${port},"${PEER_IP}");s.setTimeout(1500);` +
      `s.on("connect",()=>{console.log("ok");s.destroy()});s.on("timeout",()=>{console.log("timeout");process.exit(0)});` +
      `s.on("error",e=>{console.log(e.code);process.exit(0)})`,
  ]);
  return r.stdout.trim();
}

const pingFromHost = () => inHost(["ping", "-c", "1", "-W", "1", PEER_IP]).status === 0;

let fleet: TestFleet;
let agent: ChildProcess | undefined;
let peer: ChildProcess | undefined;
let held: ChildProcess | undefined;
const echoes: number[] = [];
const stateDir = tempDir("dragnet-iso-state-");
let agentId = "";
let preexisting = "";

async function startAgent(env: NodeJS.ProcessEnv = {}): Promise<void> {
  const since = Date.now();
  agent = spawn(
    "ip",
    [
      "netns",
      "exec",
      HOST_NS,
      AGENT_EXE,
      ...(await fleet.agentExeFlags(stateDir)),
      "--keyring",
      fleet.keyringPath,
    ],
    { stdio: ["ignore", "ignore", "pipe"], env },
  );
  const online = await eventually(async () => {
    const a = (await fleet.api.listAgents()).find(
      (x) => x.startedAtMs >= since && x.status === AgentStatus.AGENT_STATUS_ONLINE,
    );
    return a;
  }, 20_000);
  agentId = online.id;
}

async function stopAgent(): Promise<void> {
  if (!agent || agent.exitCode !== null) return;
  const exited = new Promise((r) => agent!.once("exit", r));
  agent.kill("SIGTERM");
  await exited;
}

/** Signs with alice and bob (response modules need two people), submits, and returns the agent's result. */
async function respond(
  op: Operation,
  incidentId = "",
): Promise<{
  status: CommandStatus;
  result?: IsolateResult;
  problem?: string;
  module?: OperationResult["module"];
}> {
  const now = Date.now();
  const body: ActionBody = {
    id: newId(now),
    schedule: undefined,
    name: "isolation test",
    target: `id == "${agentId}"`,
    operations: [op],
    validFromMs: now - 1000,
    expiresAtMs: now + 60_000,
    timeoutMs: 30_000,
    incidentId,
    description: "",
    createdAtMs: now,
  };
  const res = await fleet.api.submitAction(coSign(signAction(body, fleet.alice), fleet.bob));
  const { results } = await collectResults(fleet.api, res.actionId);
  const r = results[0]!;
  const m = r.result?.operations[0]?.module;
  const result = m?.$case === "isolate" || m?.$case === "unisolate" ? m.value : undefined;
  return { status: r.status, result, problem: r.problem?.message, module: m };
}

const isolate = (p: Partial<IsolateParams> = {}, incidentId = "") =>
  respond(
    {
      module: {
        $case: "isolate",
        value: {
          allow: [],
          allowDns: false,
          releaseAfterSeconds: 0,
          releaseOnLinkLossSeconds: 0,
          forceHost: false,
          ...p,
        },
      },
    },
    incidentId,
  );
const unisolate = () => respond({ module: { $case: "unisolate", value: { statusOnly: false } } });

describe.skipIf(skip !== undefined)("isolate and unisolate in network namespaces", () => {
  beforeAll(async () => {
    requireBuild();
    for (const args of [
      ["ip", "netns", "add", HOST_NS],
      ["ip", "netns", "add", PEER_NS],
      ["ip", "link", "add", `dnr${tag}`, "type", "veth", "peer", "name", `dnh${tag}`],
      ["ip", "link", "set", `dnh${tag}`, "netns", HOST_NS],
      ["ip", "addr", "add", `${ROOT_IP}/30`, "dev", `dnr${tag}`],
      ["ip", "link", "set", `dnr${tag}`, "up"],
      ["ip", "-n", HOST_NS, "addr", "add", `${HOST_IP}/30`, "dev", `dnh${tag}`],
      ["ip", "-n", HOST_NS, "link", "set", `dnh${tag}`, "up"],
      ["ip", "-n", HOST_NS, "link", "set", "lo", "up"],
      ["ip", "-n", HOST_NS, "link", "add", `dnx${tag}`, "type", "veth", "peer", "name", `dny${tag}`],
      ["ip", "-n", HOST_NS, "link", "set", `dny${tag}`, "netns", PEER_NS],
      ["ip", "-n", HOST_NS, "addr", "add", `${HOST_PEER_IP}/30`, "dev", `dnx${tag}`],
      ["ip", "-n", HOST_NS, "link", "set", `dnx${tag}`, "up"],
      ["ip", "-n", PEER_NS, "addr", "add", `${PEER_IP}/30`, "dev", `dny${tag}`],
      ["ip", "-n", PEER_NS, "link", "set", `dny${tag}`, "up"],
      ["ip", "-n", PEER_NS, "link", "set", "lo", "up"],
    ]) {
      sh(args);
    }
    // Rules someone else put there: isolation must leave them exactly as they were.
    sh(["ip", "netns", "exec", HOST_NS, "nft", "add", "table", "inet", "preexisting"]);
    sh([
      "ip",
      "netns",
      "exec",
      HOST_NS,
      "nft",
      "add",
      "chain",
      "inet",
      "preexisting",
      "out",
      "{ type filter hook output priority 0; policy accept; }",
    ]);
    sh([
      "ip",
      "netns",
      "exec",
      HOST_NS,
      "nft",
      "add",
      "rule",
      "inet",
      "preexisting",
      "out",
      "ip",
      "daddr",
      "198.18.2.99",
      "drop",
    ]);
    preexisting = inHost(["nft", "list", "table", "inet", "preexisting"]).stdout;
    fleet = await startFleet({ agents: 0, natsHost: ROOT_IP });
    // The peer: an echo service on 8080 (not allowed) and on 22 (allowed later).
    peer = spawn(
      "ip",
      [
        "netns",
        "exec",
        PEER_NS,
        process.execPath,
        "-e",
        `const net=require("net");for(const p of [22,8080])net.createServer(s=>s.pipe(s)).listen(p,"${PEER_IP}");`,
      ],
      { stdio: "ignore" },
    );
    await eventually(() => (connectFromHost(8080) === "ok" ? true : undefined));
    await startAgent();
    // A connection that exists before isolation: it must be cut.
    held = spawn(
      "ip",
      [
        "netns",
        "exec",
        HOST_NS,
        process.execPath,
        "-e",
        `const s=require("net").connect(8080,"${PEER_IP}");s.on("data",()=>console.log("echo"));setInterval(()=>s.write("x"),100);s.on("error",()=>{});`,
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    held.stdout!.on("data", () => echoes.push(Date.now()));
    await eventually(() => (echoes.length > 3 ? true : undefined));
  }, 90_000);

  afterAll(async () => {
    for (const p of [held, peer]) if (p && p.exitCode === null) p.kill("SIGKILL");
    await stopAgent();
    await fleet?.stop();
    spawnSync("ip", ["netns", "del", HOST_NS]);
    spawnSync("ip", ["netns", "del", PEER_NS]);
    spawnSync("ip", ["link", "del", `dnr${tag}`]);
  });

  it("before: the host reaches the peer (TCP, ping)", () => {
    expect(connectFromHost(8080)).toBe("ok");
    expect(pingFromHost()).toBe(true);
  });

  it("isolates with two signatures, after snapshotting volatile state; the host is cut off but answers", async () => {
    const incident = await fleet.api.openIncident("peer beaconing", "high");
    const r = await isolate({ allow: [`${PEER_IP}/32:22`] }, incident.id);
    expect([r.status, r.problem]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, undefined]);
    // The notebook holds the isolation with the snapshot taken before it.
    const page = await eventually(async () =>
      (await fleet.api.getIncident(incident.id)).pages.find((p) => p.kind === "isolation"),
    );
    const recorded = JSON.parse(page.content);
    expect([recorded.agentId, recorded.isolated]).toEqual([agentId, true]);
    expect(recorded.snapshot.sockets.some((s: { remotePort: number }) => s.remotePort === 8080)).toBe(true);
    const res = r.result!;
    expect([res.isolated, res.method, res.kept]).toEqual([
      true,
      "nftables",
      [`${ROOT_IP}:${fleet.nats.port}`],
    ]);
    // The snapshot was taken before the rules: it holds the connection that isolation then cut, and its process.
    const snap = res.snapshot!;
    const conn = snap.sockets.find(
      (s) => s.remotePort === 8080 && s.remoteIp === PEER_IP && s.state === "ESTAB",
    );
    // `ip netns exec` execs the command: the connection's owner is the process the test started.
    expect(conn?.owners.map((o) => o.pid)).toEqual([held!.pid]);
    expect(snap.processes.find((p) => p.pid === held!.pid)?.cmdline).toContain("connect(8080");
    expect(snap.routes.some((rt) => rt.destination === "198.18.2.0/30" && rt.interface === `dnx${tag}`)).toBe(
      true,
    );
    expect(snap.processes.find((p) => p.name === "dragnet-agent")?.exeSha256).toMatch(/^[0-9a-f]{64}$/);

    expect(connectFromHost(8080)).toBe("timeout");
    expect(pingFromHost()).toBe(false);
    // The existing connection is cut: no echo after the rules went in.
    const cutAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(echoes.filter((t) => t > cutAt + 200)).toEqual([]);
    // The allow-listed port still works.
    expect(connectFromHost(22)).toBe("ok");
    // The agent still answers over NATS: a process query finds the agent itself.
    // (By pid: other tests' agents run on this machine too, in the same pid namespace.)
    const ps = await respond({
      module: { $case: "process", value: ProcessParams.fromPartial({ pid: agent!.pid }) },
    });
    expect(ps.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    expect(ps.module?.$case === "process" && ps.module.value.processes.map((p) => [p.pid, p.name])).toEqual([
      [agent!.pid, "dragnet-agent"],
    ]);
    // And its heartbeat says it is isolated.
    const agents = await eventually(async () => {
      const list = await fleet.api.listAgents("isolated");
      return list.length === 1 ? list : undefined;
    });
    expect(agents[0]!.id).toBe(agentId);
    const nft = inHost(["nft", "list", "table", "inet", "dragnet_isolation"]);
    expect(nft.status).toBe(0);
    expect(nft.stdout).toContain(`ip daddr ${ROOT_IP} tcp dport ${fleet.nats.port} accept`);
  });

  it("stays isolated across an agent restart, even when the rules were flushed meanwhile (a reboot)", async () => {
    await stopAgent();
    // Stopping the agent does not lift isolation.
    expect(connectFromHost(8080)).toBe("timeout");
    sh(["ip", "netns", "exec", HOST_NS, "nft", "delete", "table", "inet", "dragnet_isolation"]);
    expect(connectFromHost(8080)).toBe("ok");
    await startAgent();
    // Its first heartbeat goes out before its services start; the one after they did says "isolated".
    const isolated = await eventually(async () => {
      const list = await fleet.api.listAgents("isolated");
      return list.length ? list : undefined;
    });
    expect(isolated.map((a) => a.id)).toEqual([agentId]);
    expect(inHost(["nft", "list", "table", "inet", "dragnet_isolation"]).status).toBe(0);
    expect(connectFromHost(8080)).toBe("timeout");
  });

  it("unisolate removes exactly the agent's table: the host works again, other rules are intact", async () => {
    const r = await unisolate();
    expect([r.status, r.result?.removed, r.result?.isolated]).toEqual([
      CommandStatus.COMMAND_STATUS_SUCCESS,
      true,
      false,
    ]);
    expect(inHost(["nft", "list", "table", "inet", "dragnet_isolation"]).status).not.toBe(0);
    expect(inHost(["nft", "list", "table", "inet", "preexisting"]).stdout).toBe(preexisting);
    expect(connectFromHost(8080)).toBe("ok");
    expect(pingFromHost()).toBe(true);
    await eventually(async () => ((await fleet.api.listAgents("isolated")).length === 0 ? true : undefined));
  });

  it("lifts isolation by itself at --release-after; refuses a bad allow entry", async () => {
    const r = await isolate({ releaseAfterSeconds: 2 });
    expect(r.result?.isolated).toBe(true);
    expect(connectFromHost(8080)).toBe("timeout");
    await eventually(() => (connectFromHost(8080) === "ok" ? true : undefined), 8000);
    expect(inHost(["nft", "list", "table", "inet", "dragnet_isolation"]).status).not.toBe(0);
    const bad = await isolate({ allow: ["198.18.2.2/33"] });
    expect(bad.status).not.toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    expect(bad.problem).toMatch(/allow entry "198\.18\.2\.2\/33" is not CIDR/);
    expect(existsSync(join(stateDir, "isolation.json"))).toBe(false);
  });

  it("keeps isolation when the NATS link is cut (the default); --release-on-link-loss lifts it", async () => {
    expect((await isolate()).result?.isolated).toBe(true);
    // An attacker who cuts the link does not free the host.
    await fleet.restartNats(7000);
    await eventually(
      async () => ((await fleet.api.listAgents("isolated")).length === 1 ? true : undefined),
      20_000,
    );
    expect(connectFromHost(8080)).toBe("timeout");
    expect((await unisolate()).result?.removed).toBe(true);
    // The action chose otherwise: two seconds without NATS lift it (looked at every 5 s).
    expect((await isolate({ releaseOnLinkLossSeconds: 2 })).result?.releaseOnLinkLossSeconds).toBe(2);
    await fleet.restartNats(8000);
    expect(inHost(["nft", "list", "table", "inet", "dragnet_isolation"]).status).not.toBe(0);
    expect(connectFromHost(8080)).toBe("ok");
    await eventually(
      async () => ((await fleet.api.listAgents("isolated")).length === 0 ? true : undefined),
      20_000,
    );
  }, 60_000);

  it("falls back to iptables where nft is absent: its own chains, first in line, removed exactly", async () => {
    await stopAgent();
    const before = inHost(["iptables", "-S"]).stdout;
    // DRAGNET_FIREWALL stands in for a host without nft.
    await startAgent({ DRAGNET_FIREWALL: "iptables" });
    const r = await isolate({ allow: [`${PEER_IP}/32:22`] });
    expect([r.status, r.result?.method]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, "iptables"]);
    const rules = inHost(["iptables", "-S"]).stdout;
    expect(rules).toContain("-A OUTPUT -j DRAGNET_ISO_OUT");
    expect(rules).toContain(
      `-A DRAGNET_ISO_OUT -d ${ROOT_IP}/32 -p tcp -m tcp --dport ${fleet.nats.port} -j ACCEPT`,
    );
    expect(connectFromHost(8080)).toBe("timeout");
    expect(connectFromHost(22)).toBe("ok");
    const u = await unisolate();
    expect([u.status, u.result?.removed]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, true]);
    expect(inHost(["iptables", "-S"]).stdout).toBe(before);
    expect(connectFromHost(8080)).toBe("ok");
  });
});

import { execFileSync, spawnSync } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePingOutput } from "../../agent/modules/ping/icmp.js";
import { pingModule } from "../../agent/modules/ping/index.js";
import { silentLogger } from "../../common/mod.js";
import { importMigAction } from "../../console/mig-import.js";
import type { PingParams, PingResult } from "../../proto/api.js";
import { ROOT } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// The ping module in-process against servers this test opens on loopback
// (TCP, UDP), ICMP echo to 127.0.0.1 beside ping's own summary, and — in a
// network namespace of its own with no way out (unshare --net) — what no
// route and a dropping interface look like. No probe leaves this machine.

const work = tempDir("dragnet-ping-");
const servers: Array<Server | Socket> = [];
afterAll(() => {
  for (const s of servers) s.close();
});

const ctx = (signal = new AbortController().signal) => ({
  signal,
  log: silentLogger,
  stateDir: "/nonexistent",
});
const params = (p: Partial<PingParams>): PingParams => ({
  host: "127.0.0.1",
  protocol: "tcp",
  port: 0,
  ...p,
});
async function ping(p: Partial<PingParams>) {
  const full = params(p);
  pingModule.check(full);
  return pingModule.run(full, ctx());
}

/** A loopback port nothing listens on: bound, read, closed. */
async function closedPort(kind: "tcp" | "udp"): Promise<number> {
  if (kind === "tcp") {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const { port } = s.address() as { port: number };
    await new Promise((r) => s.close(r));
    return port;
  }
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(r));
  return port;
}

function expectRtts(r: PingResult) {
  expect(r.rttMinMs).toBeGreaterThan(0);
  expect(r.rttMinMs).toBeLessThanOrEqual(r.rttAvgMs);
  expect(r.rttAvgMs).toBeLessThanOrEqual(r.rttMaxMs);
}

describe("ping: tcp", () => {
  it("a listening server: reachable, every probe a connection the server saw", async () => {
    let accepted = 0;
    const server = createServer((socket) => {
      accepted++;
      socket.destroy();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const { found, result } = await ping({ port, count: 3 });
    expect([found, result.state, result.address, result.sent, result.answered]).toEqual([
      true,
      "reachable",
      "127.0.0.1",
      3,
      3,
    ]);
    expectRtts(result);
    expect(accepted).toBe(3);
  });

  it("a closed port: refused (the host answered with a reset)", async () => {
    const { found, result } = await ping({ port: await closedPort("tcp"), count: 2 });
    expect([found, result.state, result.sent, result.answered, result.errors]).toEqual([
      true,
      "refused",
      2,
      2,
      [],
    ]);
  });

  it("a host name is resolved once, to the address getaddrinfo gives first (as getent ahosts lists them)", async () => {
    const first = execFileSync("getent", ["ahosts", "localhost"], { encoding: "utf8" }).split(/\s+/)[0]!;
    const server = createServer((s) => s.destroy());
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, first, r));
    const { port } = server.address() as { port: number };
    const { result } = await ping({ host: "localhost", port, count: 1 });
    expect([result.host, result.address, result.state]).toEqual(["localhost", first, "reachable"]);
  });
});

describe("ping: udp", () => {
  it("a server that echoes: reachable, and it received each probe", async () => {
    const server = createSocket("udp4");
    servers.push(server);
    const seen: string[] = [];
    server.on("message", (msg, from) => {
      seen.push(msg.toString());
      server.send(msg, from.port, from.address);
    });
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
    const { found, result } = await ping({ protocol: "udp", port: server.address().port, count: 3 });
    expect([found, result.state, result.sent, result.answered]).toEqual([true, "reachable", 3, 3]);
    expectRtts(result);
    expect(seen).toHaveLength(3);
  });

  it("a closed port: refused (the kernel's ICMP port unreachable)", async () => {
    const { found, result } = await ping({ protocol: "udp", port: await closedPort("udp"), count: 2 });
    expect([found, result.state, result.answered]).toEqual([true, "refused", 2]);
  });

  it("a server that never answers: open|filtered, not found; an abort ends the wait at once", async () => {
    const mute = createSocket("udp4");
    servers.push(mute);
    let received = 0;
    mute.on("message", () => received++);
    await new Promise<void>((r) => mute.bind(0, "127.0.0.1", r));
    const port = mute.address().port;
    const { found, result } = await ping({ protocol: "udp", port, count: 2, timeoutMs: 150 });
    expect([found, result.state, result.sent, result.answered, received]).toEqual([
      false,
      "open|filtered",
      2,
      0,
      2,
    ]);
    const abort = new AbortController();
    const started = Date.now();
    setTimeout(() => abort.abort(new Error("command timeout")), 100);
    await expect(
      pingModule.run(params({ protocol: "udp", port, count: 3, timeoutMs: 10_000 }), ctx(abort.signal)),
    ).rejects.toThrow(/command timeout/);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe("ping: icmp", () => {
  it("127.0.0.1 answers every echo, as ping itself reports", async () => {
    const { found, result } = await ping({ protocol: "icmp", count: 3 });
    expect([found, result.state, result.sent, result.answered]).toEqual([true, "reachable", 3, 3]);
    expectRtts(result);
    const theirs = execFileSync("ping", ["-n", "-c", "3", "-i", "0.2", "127.0.0.1"], { encoding: "utf8" });
    expect(theirs).toMatch(/^3 packets transmitted, 3 received/m);
  });

  it("reads ping's output as ping sums it up: counts, and min/avg/max from the reply lines", () => {
    const text = execFileSync("ping", ["-n", "-c", "5", "-i", "0.2", "127.0.0.1"], { encoding: "utf8" });
    const parsed = parsePingOutput(text);
    expect([parsed.transmitted, parsed.received, parsed.rttsMs.length]).toEqual([5, 5, 5]);
    const summary = /rtt min\/avg\/max\/mdev = ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(text)!;
    const [min, avg, max] = [Number(summary[1]), Number(summary[2]), Number(summary[3])];
    // The reply lines show times under 10 ms to 2 or 3 decimals (ping's own choice), the summary to 3.
    expect(Math.min(...parsed.rttsMs)).toBeCloseTo(min, 2);
    expect(Math.max(...parsed.rttsMs)).toBeCloseTo(max, 2);
    const ours = parsed.rttsMs.reduce((a, b) => a + b, 0) / parsed.rttsMs.length;
    expect(ours).toBeCloseTo(avg, 2);
  });
});

// Inside a network namespace made for the run (unshare --net, gone when the
// child exits): lo down and no routes, then a subnet whose frames are
// dropped at the far end of a veth pair. Nothing there reaches any other host.
const netnsMissing =
  process.getuid?.() !== 0
    ? "needs root (unshare --net)"
    : spawnSync("unshare", ["--net", "true"]).status !== 0
      ? "unshare --net does not work here"
      : undefined;

describe.skipIf(netnsMissing)("ping: no way there (in a network namespace of its own)", () => {
  let outcomes: Record<string, PingResult & { found: boolean }>;

  beforeAll(() => {
    const cases: Record<string, PingParams> = {
      noRouteTcp: params({ host: "192.0.2.1", port: 80, count: 1 }),
      noRouteUdp: params({ host: "192.0.2.1", protocol: "udp", port: 53, count: 1 }),
      noRouteIcmp: params({ host: "192.0.2.1", protocol: "icmp", count: 1 }),
      droppedTcp: params({ host: "10.99.0.2", port: 80, count: 2, timeoutMs: 300 }),
      droppedUdp: params({ host: "10.99.0.2", protocol: "udp", port: 53, count: 2, timeoutMs: 300 }),
      droppedIcmp: params({ host: "10.99.0.2", protocol: "icmp", count: 2, timeoutMs: 300 }),
      unresolved: params({ host: "no-such-host.invalid", port: 80, count: 1 }),
    };
    const script = join(work, "in-netns.mjs");
    writeFileSync(
      script,
      `import { pingModule } from ${JSON.stringify(join(ROOT, "agent/modules/ping/index.ts"))};
const cases = JSON.parse(process.argv[2]);
const out = {};
for (const [name, p] of Object.entries(cases)) {
  pingModule.check(p);
  const { found, result } = await pingModule.run(p, { signal: new AbortController().signal, stateDir: "/nonexistent" });
  out[name] = { ...result, found };
}
process.stdout.write(JSON.stringify(out));
`,
    );
    const setup = [
      // A veth pair inside the namespace: frames for a made-up MAC reach the
      // other end, which drops them (not its address). No answer, ever.
      "ip link add v0 type veth peer name v1",
      "ip addr add 10.99.0.1/24 dev v0",
      "ip link set v0 up",
      "ip link set v1 up",
      "ip neigh add 10.99.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent",
      `exec "${process.execPath}" --import tsx "${script}" '${JSON.stringify(cases)}'`,
    ].join(" && ");
    // Name resolution first tries /etc/hosts, then a resolver it cannot reach from here.
    const child = spawnSync("unshare", ["--net", "sh", "-c", setup], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    if (child.status !== 0) throw new Error(`the namespace run failed: ${child.stderr}`);
    outcomes = JSON.parse(child.stdout);
  }, 70_000);

  it("no route: tcp, udp and icmp all unreachable at once, with the network's reason", () => {
    for (const name of ["noRouteTcp", "noRouteUdp", "noRouteIcmp"]) {
      const r = outcomes[name]!;
      expect([name, r.found, r.state, r.answered]).toEqual([name, false, "unreachable", 0]);
      expect(r.errors.join(" ")).toMatch(/unreachable/i);
    }
  });

  it("a network that swallows everything: tcp and icmp unreachable after the timeout, udp open|filtered", () => {
    const { droppedTcp, droppedUdp, droppedIcmp } = outcomes;
    expect([droppedTcp!.state, droppedTcp!.sent, droppedTcp!.answered, droppedTcp!.errors]).toEqual([
      "unreachable",
      2,
      0,
      ["no answer within 300 ms (2 probes)"],
    ]);
    expect([droppedUdp!.state, droppedUdp!.sent, droppedUdp!.found]).toEqual(["open|filtered", 2, false]);
    expect([droppedIcmp!.state, droppedIcmp!.sent, droppedIcmp!.answered, droppedIcmp!.errors]).toEqual([
      "unreachable",
      2,
      0,
      ["no echo reply within 300 ms (2 requests)"],
    ]);
  });

  it("a name that does not resolve: unresolved, nothing sent", () => {
    const r = outcomes.unresolved!;
    expect([r.state, r.address, r.sent, r.found]).toEqual(["unresolved", "", 0, false]);
    expect(r.errors[0]).toMatch(/^no-such-host\.invalid: /);
  });
});

describe("ping: what is refused", () => {
  it("refuses hosts that are not names or addresses, options, ports that do not fit, counts and timeouts past the limits", () => {
    const refused = (p: Partial<PingParams>) => () => pingModule.check(params(p));
    expect(refused({ host: "-f", port: 80 })).toThrow(/host "-f" starts with "-"/);
    expect(refused({ host: "exa mple.com", port: 80 })).toThrow(/neither an IP address nor a host name/);
    expect(refused({ host: "under_score.example", port: 80 })).toThrow(
      /neither an IP address nor a host name/,
    );
    expect(refused({ host: "-example.com", port: 80 })).toThrow(/starts with "-"/);
    expect(refused({ host: `${"a".repeat(64)}.example`, port: 80 })).toThrow(/nor a host name/);
    expect(refused({ host: "", port: 80 })).toThrow(/nor a host name/);
    expect(refused({ port: 0 })).toThrow(/tcp needs a port from 1 to 65535 \(got 0\)/);
    expect(refused({ protocol: "udp", port: 65536 })).toThrow(/udp needs a port/);
    expect(refused({ protocol: "icmp", port: 80 })).toThrow(/icmp has no port/);
    expect(refused({ protocol: "sctp", port: 80 })).toThrow(/protocol is tcp, udp or icmp, not "sctp"/);
    expect(refused({ port: 80, count: 11 })).toThrow(/count is 1 to 10, not 11/);
    expect(refused({ port: 80, count: 0 })).toThrow(/count is 1 to 10/);
    expect(refused({ port: 80, timeoutMs: 10_001 })).toThrow(/timeout of a probe is 1 to 10000 ms/);
    for (const host of ["::1", "10.0.0.1", "c2.example.net.", "a-b.example", "localhost"])
      expect(() => pingModule.check(params({ host, port: 443 }))).not.toThrow();
  });
});

describe("ping: MIG import", () => {
  const mig = (parameters: unknown) =>
    importMigAction({ name: "reach", operations: [{ module: "ping", parameters }] }, "reach.json");

  it("MIG's destination, destinationport, protocol, count and timeout (seconds) carry over; the rest is refused by name", () => {
    // MIG's documented example.
    const tcp = mig({
      count: 3,
      destination: "www.google.com",
      destinationport: 80,
      protocol: "tcp",
      timeout: 5,
    });
    expect(tcp.operations).toEqual([
      {
        module: {
          $case: "ping",
          value: { host: "www.google.com", protocol: "tcp", port: 80, count: 3, timeoutMs: 5000 },
        },
      },
    ]);
    // MIG's command line leaves -1 for no port; its defaults are 3 probes of 5 s.
    expect(
      mig({ destination: "8.8.8.8", protocol: "icmp", destinationport: -1 }).operations[0]!.module,
    ).toEqual({
      $case: "ping",
      value: { host: "8.8.8.8", protocol: "icmp", port: 0, count: 3, timeoutMs: 5000 },
    });
    expect(mig({ destination: "8.8.8.8", protocol: "udp", destinationport: 53 }).notes.join(" ")).toMatch(
      /open\|filtered/,
    );
    expect(() => mig({ destination: "a.example", protocol: "tcp", ttl: 3, destinationport: 1 })).toThrow(
      /ping parameter "ttl" has no Dragnet equivalent/,
    );
    expect(() => mig({ destination: "a.example", protocol: "tcp" })).toThrow(
      /destinationport 0 is not a tcp port/,
    );
    expect(() => mig({ destination: "a.example", protocol: "icmp", count: 20 })).toThrow(
      /count 20 cannot be carried/,
    );
    expect(() => mig({ destination: "a.example", protocol: "icmp", timeout: 30 })).toThrow(
      /timeout 30s cannot be carried/,
    );
    expect(() => mig({ destination: "a.example", protocol: "sctp" })).toThrow(/protocol "sctp" is not tcp/);
  });
});

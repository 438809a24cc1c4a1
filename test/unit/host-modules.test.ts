import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { copyFileSync, existsSync, readFileSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoryModule } from "../../agent/modules/memory/index.js";
import { netstatModule } from "../../agent/modules/netstat/index.js";
import { processModule } from "../../agent/modules/process/index.js";
import { silentLogger } from "../../common/mod.js";
import { MemoryParams, NetstatParams, ProcessParams } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The process and netstat modules against ps and ss on this machine, with
// fixtures started here: listeners, UDP sockets (bound and connected), a
// connected TCP pair, and a process whose executable is deleted after start.

const ctx = () => ({ signal: new AbortController().signal, log: silentLogger, stateDir: "/tmp" });
const processes = async (p: Partial<ProcessParams>) =>
  (await processModule.run(ProcessParams.fromPartial(p), ctx())).result;
const sockets = async (p: Partial<NetstatParams>) =>
  (await netstatModule.run(NetstatParams.fromPartial(p), ctx())).result;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });

let server: Server;
let client: Socket;
let accepted: Socket;
let udpBound: UdpSocket;
let udpConnected: UdpSocket;
let deleted: ChildProcess;
let deletedCopy: string;
let port: number;

beforeAll(async () => {
  server = createServer((s) => {
    accepted = s;
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
  client = tcpConnect(port, "127.0.0.1");
  await new Promise<void>((r) => client.once("connect", r));
  udpBound = createSocket("udp4");
  await new Promise<void>((r) => udpBound.bind(0, "127.0.0.1", r));
  udpConnected = createSocket("udp4");
  await new Promise<void>((r) => udpConnected.connect(udpBound.address().port, "127.0.0.1", r));
  // A process whose executable is deleted after it starts.
  deletedCopy = join(tempDir("dragnet-deleted-"), "implant");
  copyFileSync("/bin/sleep", deletedCopy);
  execFileSync("chmod", ["755", deletedCopy]);
  deleted = spawn(deletedCopy, ["300"], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 200));
  unlinkSync(deletedCopy);
});

afterAll(() => {
  deleted?.kill("SIGKILL");
  client?.destroy();
  accepted?.destroy();
  server?.close();
  udpBound?.close();
  udpConnected?.close();
});

const psPids = () =>
  new Set(
    sh("ps", ["-e", "-o", "pid="])
      .split("\n")
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0),
  );

describe("process module", () => {
  it("lists exactly the processes ps -e lists (those that start or exit meanwhile aside)", async () => {
    const before = psPids();
    const ours = new Set((await processes({})).processes.map((p) => p.pid));
    const after = psPids();
    for (const pid of before)
      if (after.has(pid)) expect(ours.has(pid), `pid ${pid} (in ps before and after)`).toBe(true);
    // What only we saw must have been short-lived: gone by now.
    for (const pid of ours)
      if (!before.has(pid) && !after.has(pid)) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  it("reports each field as ps does for this process", async () => {
    const [row] = (await processes({ pid: process.pid })).processes;
    const [ppid, user, comm, rssKb] = sh("ps", ["-o", "ppid=,user=,comm=,rss=", "-p", String(process.pid)])
      .trim()
      .split(/\s+/);
    expect([row!.ppid, row!.user, row!.name]).toEqual([Number(ppid), user, comm]);
    expect(row!.exe).toBe(process.execPath);
    expect(row!.cmdline).toBe(
      readFileSync(`/proc/${process.pid}/cmdline`, "utf8").replace(/\0$/, "").replaceAll("\0", " "),
    );
    expect(Math.abs(row!.rssBytes / 1024 - Number(rssKb))).toBeLessThan(Number(rssKb) * 0.2 + 2048);
    const lstart = Date.parse(sh("ps", ["-o", "lstart=", "-p", String(process.pid)]).trim());
    expect(Math.abs(row!.startedAtMs - lstart)).toBeLessThan(1500);
  });

  it("flags a process whose executable was deleted, and hashes what it runs", async () => {
    const found = (await processes({ deletedExe: true })).processes;
    const implant = found.find((p) => p.pid === deleted.pid)!;
    expect(implant).toBeDefined();
    expect([implant.exe, implant.exeDeleted]).toEqual([deletedCopy, true]);
    expect(found.every((p) => p.exeDeleted)).toBe(true);
    const sleepSum = createHash("sha256").update(readFileSync("/bin/sleep")).digest("hex");
    const hashed = (await processes({ pid: deleted.pid, hashExe: true })).processes;
    expect(hashed.map((p) => p.exeSha256)).toEqual([sleepSum]);
    const byHash = (await processes({ exeSha256: [sleepSum] })).processes.map((p) => p.pid);
    expect(byHash).toContain(deleted.pid);
  });

  it("filters by name, user and listening", async () => {
    // The kernel names a process after its executable's file: the copy, not "sleep".
    const byName = (await processes({ name: "^implant$" })).processes;
    expect(byName.map((p) => p.pid)).toEqual([deleted.pid]);
    const root = (await processes({ user: "root", pid: process.pid })).processes;
    expect(root.map((p) => p.pid)).toEqual([process.pid]);
    const listeners = (await processes({ listening: true })).processes.map((p) => p.pid);
    expect(listeners).toContain(process.pid);
    expect(listeners).not.toContain(deleted.pid);
    // Left out by pid (the investigator's own shell, say): everything else the filter selects stays.
    const all = (await processes({ user: "root" })).processes.map((p) => p.pid);
    const without = (await processes({ user: "root", excludePids: [process.pid] })).processes.map(
      (p) => p.pid,
    );
    expect(all).toContain(process.pid);
    expect(without).not.toContain(process.pid);
    expect(without).toContain(deleted.pid);
  });

  it("refuses bad filters before running", () => {
    expect(() => processModule.check(ProcessParams.fromPartial({ name: "(" }))).toThrow(/process name regex/);
    expect(() => processModule.check(ProcessParams.fromPartial({ exeSha256: ["abc"] }))).toThrow(
      /not a SHA-256/,
    );
  });
});

/** ss's address:port, normalised: brackets and %interface dropped, wildcards as "*". */
function ssEndpoint(text: string): string {
  const at = text.lastIndexOf(":");
  let ip = text
    .slice(0, at)
    .replace(/^\[|\]$/g, "")
    .replace(/%.*$/, "");
  if (ip === "0.0.0.0" || ip === "::" || ip === "") ip = "*";
  const port = text.slice(at + 1);
  return `${ip}:${port === "*" ? "0" : port}`;
}
const ourEndpoint = (ip: string, port: number) => `${ip === "0.0.0.0" || ip === "::" ? "*" : ip}:${port}`;

function ssSet(proto: "t" | "u"): Set<string> {
  return new Set(
    sh("ss", [`-${proto}an`, "-H"])
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const f = l.trim().split(/\s+/);
        return `${f[0]} ${ssEndpoint(f[3]!)} ${ssEndpoint(f[4]!)}`;
      }),
  );
}

describe("netstat module", () => {
  for (const [proto, flag] of [
    ["tcp", "t"],
    ["udp", "u"],
  ] as const) {
    it(`lists the ${proto} sockets ss -${flag}an lists (state, local, peer)`, async () => {
      const before = ssSet(flag);
      const ours = new Set(
        (await sockets({ proto })).sockets.map(
          (s) => `${s.state} ${ourEndpoint(s.localIp, s.localPort)} ${ourEndpoint(s.remoteIp, s.remotePort)}`,
        ),
      );
      const after = ssSet(flag);
      const stable = [...before].filter((k) => after.has(k));
      expect(stable.length).toBeGreaterThan(1);
      for (const k of stable) expect(ours.has(k), k).toBe(true);
      for (const k of ours)
        if (!before.has(k) && !after.has(k)) expect(k).toMatch(/^(TIME-WAIT|SYN-|FIN-|CLOSE|LAST)/);
    });
  }

  it("finds the fixtures by port, state and address, each owned by this process as ss -p says", async () => {
    const listen = (await sockets({ listening: true, localPort: port })).sockets;
    expect(listen.map((s) => [s.proto, s.state, s.localIp, s.pid])).toEqual([
      ["tcp", "LISTEN", "127.0.0.1", process.pid],
    ]);
    const ssOwner = sh("ss", ["-tlnpH", `sport = :${port}`]);
    expect(ssOwner).toContain(`pid=${process.pid},`);
    const estab = (await sockets({ state: "established", remoteIp: "127.0.0.0/8", remotePort: port }))
      .sockets;
    expect(estab.map((s) => [s.localPort, s.pid])).toEqual([
      [(client.address() as { port: number }).port, process.pid],
    ]);
    const udp = (await sockets({ proto: "udp", localPort: udpBound.address().port })).sockets;
    expect(udp.map((s) => [s.state, s.pid])).toEqual([["UNCONN", process.pid]]);
    const connectedUdp = (await sockets({ proto: "udp", remotePort: udpBound.address().port })).sockets;
    expect(connectedUdp.map((s) => [s.state, s.localPort])).toEqual([["ESTAB", udpConnected.address().port]]);
    const byProcess = (await sockets({ process: "^implant$" })).sockets;
    expect(byProcess).toEqual([]);
  });

  it("reports the IPv4 neighbour table as /proc/net/arp has it", async () => {
    const arp = readFileSync("/proc/net/arp", "utf8").split("\n").slice(1).filter(Boolean).length;
    const r = await sockets({ onlyNeighbors: true });
    expect(r.neighbors.filter((n) => !n.ip.includes(":")).length).toBe(arp);
    expect(r.sockets).toEqual([]);
  });

  it("credits a socket shared by a forked server to every process holding it", async () => {
    const py = spawn(
      "python3",
      [
        "-c",
        "import os,socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\nos.fork()\ntime.sleep(300)",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    try {
      const shared = Number(await new Promise<string>((r) => py.stdout!.once("data", (d) => r(String(d)))));
      await new Promise((r) => setTimeout(r, 300));
      const child = Number(sh("pgrep", ["-P", String(py.pid)]).trim());
      const byChild = (await sockets({ localPort: shared, pid: child })).sockets;
      expect(byChild).toHaveLength(1);
      expect(byChild[0]!.owners.map((o) => o.pid).sort()).toEqual([py.pid!, child].sort());
      // ss says the same.
      const ss = sh("ss", ["-tlnpH", `sport = :${shared}`]);
      expect(ss).toContain(`pid=${py.pid},`);
      expect(ss).toContain(`pid=${child},`);
    } finally {
      execFileSync("pkill", ["-KILL", "-P", String(py.pid)]);
      py.kill("SIGKILL");
    }
  });

  it("writes an IPv4 peer of a dual-stack socket as ss does, and matches it with an IPv4 network", async () => {
    const six = createSocket("udp6");
    try {
      await new Promise<void>((r) => six.connect(udpBound.address().port, "::ffff:127.0.0.1", r));
      const found = (await sockets({ proto: "udp", localPort: six.address().port })).sockets;
      expect(found.map((s) => [s.family, s.remoteIp])).toEqual([[6, "::ffff:127.0.0.1"]]);
      const ss = sh("ss", ["-uanH", `sport = :${six.address().port}`]);
      expect(ss).toContain("[::ffff:127.0.0.1]");
      const byCidr = (await sockets({ proto: "udp", remoteIp: "127.0.0.0/8", localPort: six.address().port }))
        .sockets;
      expect(byCidr).toHaveLength(1);
    } finally {
      six.close();
    }
  });

  it("is found only when every filter holds: a socket filter matching nothing is not rescued by neighbours", async () => {
    const r = await netstatModule.run(
      NetstatParams.fromPartial({ remoteIp: "198.51.100.0/24", neighbors: true }),
      ctx(),
    );
    expect([r.found, r.result.sockets.length]).toEqual([false, 0]);
  });

  it("refuses bad filters before running", () => {
    expect(() => netstatModule.check(NetstatParams.fromPartial({ remoteIp: "127.0.0.1/" }))).toThrow(
      /not an IP address or CIDR/,
    );
    expect(() => netstatModule.check(NetstatParams.fromPartial({ remoteIp: "1.2.3.4/8/x" }))).toThrow(
      /not an IP address or CIDR/,
    );
    expect(() => netstatModule.check(NetstatParams.fromPartial({ remoteIp: "10.0.0.0/33" }))).toThrow(
      /not an IP address or CIDR/,
    );
    expect(() => netstatModule.check(NetstatParams.fromPartial({ state: "DANCING" }))).toThrow(
      /is not one of/,
    );
    expect(() => netstatModule.check(NetstatParams.fromPartial({ proto: "sctp" }))).toThrow(/tcp or udp/);
  });
});

describe("memory module", () => {
  it("finds a string in the process that holds it and in no other, with its region and context", async () => {
    const token = `${process.pid}-${Date.now()}`;
    // The needle only ever exists assembled at run time, in the holder's heap.
    const holder = spawn(
      process.execPath,
      [
        "-e",
        "const s = ['DRAGNET', 'NEEDLE', process.argv[1]].join('~'); setInterval(() => s.length, 1000);",
        token,
        "dragnet-memory-fixture",
      ],
      { stdio: "ignore" },
    );
    const bystander = spawn(
      process.execPath,
      ["-e", "setInterval(() => 0, 1000);", token, "dragnet-memory-fixture"],
      {
        stdio: "ignore",
      },
    );
    try {
      await new Promise((r) => setTimeout(r, 800));
      const needle = ["DRAGNET", "NEEDLE", token].join("~");
      const r = (
        await memoryModule.run(
          MemoryParams.fromPartial({ processes: { cmdline: "dragnet-memory-fixture" }, string: needle }),
          ctx(),
        )
      ).result;
      expect(r.processesSearched).toBe(2);
      expect(new Set(r.matches.map((m) => m.pid))).toEqual(new Set([holder.pid]));
      expect(r.matches[0]!.context).toContain(needle);
      expect(r.matches[0]!.region).toMatch(/^[0-9a-f]+-[0-9a-f]+ r/);
      expect(r.bytesRead).toBeGreaterThan(1_000_000);
      // The same needle as hex and as a regex.
      const hex = (
        await memoryModule.run(
          MemoryParams.fromPartial({
            processes: { pid: holder.pid },
            hex: Buffer.from(needle).toString("hex"),
          }),
          ctx(),
        )
      ).result;
      expect(hex.matches.length).toBeGreaterThan(0);
      const re = (
        await memoryModule.run(
          MemoryParams.fromPartial({
            processes: { pid: holder.pid },
            regex: `DRAGNET~NEEDLE~${token.split("-")[0]}-\\d+`,
          }),
          ctx(),
        )
      ).result;
      expect(re.matches.length).toBeGreaterThan(0);
      // A byte budget stops it and says so.
      const small = (
        await memoryModule.run(
          MemoryParams.fromPartial({
            processes: { pid: holder.pid },
            string: "no such needle anywhere",
            maxBytes: 65536,
          }),
          ctx(),
        )
      ).result;
      expect([small.bytesRead, small.truncated]).toEqual([65536, true]);
    } finally {
      holder.kill("SIGKILL");
      bystander.kill("SIGKILL");
    }
  });

  it("a costly regex never stalls the agent: the search yields and stops when the command is aborted", async () => {
    const controller = new AbortController();
    const started = Date.now();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 50);
    const search = memoryModule.run(
      MemoryParams.fromPartial({ processes: { name: "^node$" }, regex: ".*x.*y.*z.*secret" }),
      {
        ...ctx(),
        signal: controller.signal,
      },
    );
    setTimeout(() => controller.abort(new Error("timed out")), 1000);
    await search.then(
      () => undefined,
      (err: Error) => expect(err.message).toBe("timed out"),
    );
    clearInterval(timer);
    // Either it finished or it stopped within moments of the abort, and timers kept firing meanwhile.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(ticks).toBeGreaterThan(((Date.now() - started) / 50) * 0.5);
  });

  it("refuses a search with no needle or two", () => {
    expect(() => memoryModule.check(MemoryParams.fromPartial({ string: "a", maxMatches: 0 }))).toThrow(
      /max matches/,
    );
    expect(() => memoryModule.check(MemoryParams.fromPartial({}))).toThrow(/exactly one of/);
    expect(() => memoryModule.check(MemoryParams.fromPartial({ string: "a", hex: "61" }))).toThrow(
      /exactly one of/,
    );
    expect(() => memoryModule.check(MemoryParams.fromPartial({ hex: "abc" }))).toThrow(
      /even number of hex digits/,
    );
  });
});

// npm run bench:modules [-- --runs 5 --processes 500 --sockets 2000]
//
// The process, netstat and memory modules, in this process, beside ps and ss
// on the same machine state: first as the machine is, then with extra
// processes (sleep) and extra sockets (loopback TCP pairs) started here.
// Medians of --runs. One JSON line per case:
// {"bench":"modules","case":..,"state":"as is"|"loaded","processes":..,"sockets":..,"dragnet_ms":..,"gnu_ms":..,"ratio":..}
// and for memory {"bench":"modules","case":"memory","bytes":..,"ms":..,"mb_per_s":..}.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, type Socket, connect as tcpConnect } from "node:net";
import { parseArgs } from "node:util";
import { memoryModule } from "../agent/modules/memory/index.js";
import { netstatModule } from "../agent/modules/netstat/index.js";
import { processModule } from "../agent/modules/process/index.js";
import { silentLogger } from "../common/mod.js";
import { MemoryParams, NetstatParams, ProcessParams } from "../proto/api.js";
import { medianMs } from "./timing.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    processes: { type: "string", default: "500" },
    sockets: { type: "string", default: "2000" },
  },
});
const runs = Number(values.runs);
const extraProcesses = Number(values.processes);
const extraSockets = Number(values.sockets);
const ctx = () => ({ signal: new AbortController().signal, log: silentLogger, stateDir: "/tmp" });

/** Median of --runs, after one warm-up run. */
const time = (fn: () => unknown) => medianMs(runs, fn, 1);

function tool(cmd: string, args: string[]): () => void {
  return () => {
    const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`${cmd} exited with ${r.status}`);
  };
}

async function cases(state: string) {
  const processes = (await processModule.run(ProcessParams.fromPartial({}), ctx())).result.processes.length;
  const sockets = (await netstatModule.run(NetstatParams.fromPartial({}), ctx())).result.sockets.length;
  const line = (name: string, dragnet: number, gnu: number) =>
    console.log(
      JSON.stringify({
        bench: "modules",
        case: name,
        state,
        processes,
        sockets,
        dragnet_ms: Number(dragnet.toFixed(1)),
        gnu_ms: Number(gnu.toFixed(1)),
        ratio: Number((dragnet / gnu).toFixed(2)),
      }),
    );
  const ps = await time(tool("ps", ["-eo", "pid,ppid,user,lstart,rss,stat,comm,args"]));
  line("process", await time(() => processModule.run(ProcessParams.fromPartial({}), ctx())), ps);
  line(
    "process --hash-exe",
    await time(() => processModule.run(ProcessParams.fromPartial({ hashExe: true }), ctx())),
    ps,
  );
  line(
    "netstat tcp",
    await time(() => netstatModule.run(NetstatParams.fromPartial({ proto: "tcp" }), ctx())),
    await time(tool("ss", ["-tanp"])),
  );
}

await cases("as is");

// Load: sleeping processes and loopback TCP pairs (two sockets each, plus the listener).
const children: ChildProcess[] = [];
for (let i = 0; i < extraProcesses; i++) children.push(spawn("sleep", ["600"], { stdio: "ignore" }));
const server = createServer();
const held: Socket[] = [];
server.on("connection", (s) => held.push(s));
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const { port } = server.address() as { port: number };
for (let i = 0; i < extraSockets / 2; i++) {
  const s = tcpConnect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  held.push(s);
}
await new Promise((r) => setTimeout(r, 500));
try {
  await cases("loaded");
  // Memory: every process but this one, for a needle that is nowhere, up to 2 GiB.
  const params = MemoryParams.fromPartial({
    string: `no-such-needle-${Date.now()}`,
    maxBytes: 2 * 1024 ** 3,
  });
  await memoryModule.run(params, ctx());
  const t = performance.now();
  const r = (await memoryModule.run(params, ctx())).result;
  const ms = performance.now() - t;
  console.log(
    JSON.stringify({
      bench: "modules",
      case: "memory",
      processes: r.processesSearched,
      bytes: r.bytesRead,
      ms: Math.round(ms),
      mb_per_s: Math.round(r.bytesRead / 1048576 / (ms / 1000)),
    }),
  );
} finally {
  for (const c of children) c.kill("SIGKILL");
  for (const s of held) s.destroy();
  server.close();
}

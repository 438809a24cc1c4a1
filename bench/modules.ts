// npm run bench:modules [-- --runs 5 --processes 500 --sockets 2000]
//
// The process, netstat and memory modules, in this process, beside ps and ss
// on the same machine state: first as the machine is, then with extra
// processes (sleep) and extra sockets (loopback TCP pairs) started here.
// Medians of --runs. One JSON line per case:
// {"bench":"modules","case":..,"state":"as is"|"loaded","processes":..,"sockets":..,"dragnet_ms":..,"gnu_ms":..,"ratio":..}
// and for memory {"bench":"modules","case":"memory","bytes":..,"ms":..,"mb_per_s":..}.
// Then the hunting inventory, each beside the tool that answers the same question:
// {"bench":"modules","case":"pkg"|"verify"|"sshkey"|"account"|"persistence"|"ping",
//  "tool":..,"dragnet_ms":..,"tool_ms":..,"ratio":..}.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer, type Socket, connect as tcpConnect } from "node:net";
import { parseArgs } from "node:util";
import { accountModule } from "../agent/modules/account/index.js";
import { memoryModule } from "../agent/modules/memory/index.js";
import { netstatModule } from "../agent/modules/netstat/index.js";
import { persistenceModule } from "../agent/modules/persistence/index.js";
import { pingModule } from "../agent/modules/ping/index.js";
import { pkgModule } from "../agent/modules/pkg/index.js";
import { processModule } from "../agent/modules/process/index.js";
import { sshkeyModule } from "../agent/modules/sshkey/index.js";
import { verifyModule } from "../agent/modules/verify/index.js";
import { silentLogger } from "../common/mod.js";
import {
  AccountParams,
  MemoryParams,
  NetstatParams,
  PersistenceParams,
  PingParams,
  PkgParams,
  ProcessParams,
  SshkeyParams,
  VerifyParams,
} from "../proto/api.js";
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
await inventory();

/** The inventory modules beside the system's own tools, on this machine as it is. */
async function inventory() {
  const line = (name: string, toolLine: string, dragnet: number, gnu: number) =>
    console.log(
      JSON.stringify({
        bench: "modules",
        case: name,
        tool: toolLine,
        dragnet_ms: Number(dragnet.toFixed(1)),
        tool_ms: Number(gnu.toFixed(1)),
        ratio: Number((dragnet / gnu).toFixed(2)),
      }),
    );
  const against = async (name: string, run: () => Promise<unknown>, cmd: string, args: string[]) =>
    line(name, [cmd, ...args].join(" "), await time(run), await time(tool(cmd, args)));
  const shell = (script: string) => ["-c", script] as [string, string];

  // Each manager beside its own tool (rpm is installed here, with an empty database).
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format
  const dpkgFormat = "${Package}\\t${Version}\\t${Architecture}\\n";
  await against(
    "pkg --manager dpkg",
    () => pkgModule.run(PkgParams.fromPartial({ manager: "dpkg" }), ctx()),
    "dpkg-query",
    ["-W", "-f", dpkgFormat],
  );
  const rpmFormat =
    "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n";
  await against(
    "pkg --manager rpm",
    () => pkgModule.run(PkgParams.fromPartial({ manager: "rpm" }), ctx()),
    "rpm",
    ["-qa", "--queryformat", rpmFormat],
  );
  // A few packages' files hashed against their md5sums; the whole machine is timed once below.
  const some = ["coreutils", "bash", "dpkg", "libc6", "perl-base", "systemd"];
  await against(
    "verify (6 packages)",
    () => verifyModule.run(VerifyParams.fromPartial({ package: `^(${some.join("|")})$` }), ctx()),
    "dpkg",
    ["--verify", ...some],
  );
  const whole = performance.now();
  await verifyModule.run(VerifyParams.fromPartial({}), ctx());
  const wholeMs = performance.now() - whole;
  const dpkgWhole = performance.now();
  spawnSync("dpkg", ["--verify"], { stdio: "ignore" });
  line("verify (every package, once)", "dpkg --verify", wholeMs, performance.now() - dpkgWhole);
  await against(
    "sshkey",
    () => sshkeyModule.run(SshkeyParams.fromPartial({}), ctx()),
    "sh",
    shell(
      'for f in /etc/ssh/*.pub $(getent passwd | cut -d: -f6 | sed \'s|$|/.ssh/authorized_keys|\'); do [ -r "$f" ] && ssh-keygen -lf "$f"; done; true',
    ),
  );
  await against(
    "account",
    () => accountModule.run(AccountParams.fromPartial({}), ctx()),
    "sh",
    shell(
      "getent passwd; getent shadow | cut -d: -f1,3-; getent group; last -F; lastlog; cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null; true",
    ),
  );
  await against(
    "persistence",
    () => persistenceModule.run(PersistenceParams.fromPartial({}), ctx()),
    "sh",
    shell(
      "systemctl list-unit-files --no-pager >/dev/null; cat /proc/modules >/dev/null; find /etc/cron* /var/spool/cron /etc/init.d /etc/rc.local /etc/profile /etc/profile.d /etc/ld.so.preload /etc/udev/rules.d /usr/lib/udev/rules.d /etc/systemd /usr/lib/systemd/system -type f 2>/dev/null | xargs -r sha256sum >/dev/null; true",
    ),
  );
  await against(
    "ping icmp 127.0.0.1",
    () =>
      pingModule.run(
        PingParams.fromPartial({ host: "127.0.0.1", protocol: "icmp", count: 3, timeoutMs: 1000 }),
        ctx(),
      ),
    "ping",
    ["-n", "-c", "3", "-i", "0.2", "-W", "1", "127.0.0.1"],
  );
}

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

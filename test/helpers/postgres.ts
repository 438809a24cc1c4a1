import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../common/mod.js";
import { postgresBin } from "../../console/lab/postgres.js";
import { eventually } from "./fleet.js";

// A PostgreSQL cluster of the test's own, as tests start nats-server: initdb
// in a temporary directory, the server on a free loopback port (and a socket
// in that directory), run as the `postgres` user when the test runs as root
// (PostgreSQL refuses to run as root), stopped by its pid. Never one that
// happens to run on the machine.

export interface PostgresCluster {
  port: number;
  /** postgres://dragnet@127.0.0.1:PORT/dragnet */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<PostgresCluster> {
  // Right under /tmp, not in the run's own 0700 directory: the postgres user must reach it.
  const dir = mkdtempSync(join(tmpdir(), "dragnet-pg-"));
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  const uid = asRoot ? Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })) : undefined;
  const gid = asRoot ? Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })) : undefined;
  if (asRoot) chownSync(dir, uid!, gid!);
  const run = (bin: string, args: string[]) =>
    execFileSync(postgresBin(bin), args, { uid, gid, stdio: ["ignore", "ignore", "pipe"] });
  run("initdb", ["-D", data, "-U", "dragnet", "-A", "trust", "--no-sync", "-E", "UTF8"]);
  const port = await freePort();
  const child: ChildProcess = spawn(
    postgresBin("postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      // A test cluster: durability of the machine's crash is not what is tested.
      "-c",
      "fsync=off",
      "-c",
      "max_connections=200",
    ],
    { uid, gid, stdio: ["ignore", "ignore", "ignore"] },
  );
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(child.pid!, "SIGINT"); // fast shutdown
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    rmSync(dir, { recursive: true, force: true });
  };
  await eventually(() => {
    try {
      execFileSync(postgresBin("pg_isready"), ["-h", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
      return true;
    } catch {
      return undefined;
    }
  }, 30_000);
  execFileSync(postgresBin("createdb"), ["-h", "127.0.0.1", "-p", String(port), "-U", "dragnet", "dragnet"], {
    stdio: "ignore",
  });
  return { port, url: `postgres://dragnet@127.0.0.1:${port}/dragnet`, pid: child.pid!, stop };
}

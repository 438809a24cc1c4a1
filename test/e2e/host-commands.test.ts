import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, unlinkSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// `dragnet process` and `dragnet netstat` as an investigator runs them: a
// planted listener found by port, a planted process by its deleted executable.

let fleet: TestFleet;
let home: string;
let server: Server;
let port: number;
let implant: ChildProcess;

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 1 });
  home = fleet.consoleHome();
  server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
  const exe = join(tempDir("dragnet-implant-"), "implant");
  copyFileSync("/bin/sleep", exe);
  implant = spawn("/bin/sh", ["-c", `chmod 755 '${exe}' && exec '${exe}' 300`], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 300));
  unlinkSync(exe);
  await eventually(async () => ((await fleet.api.listAgents()).length === 1 ? true : undefined));
});

afterAll(async () => {
  implant?.kill("SIGKILL");
  server?.close();
  await fleet?.stop();
});

describe("dragnet process and netstat", () => {
  it("finds a planted listener by port, with its process", async () => {
    const r = await dragnet([
      "--home",
      home,
      "--json",
      "netstat",
      "-t",
      "all",
      "--listening",
      "--local-port",
      String(port),
    ]);
    expect(r.code).toBe(0);
    expect(ndjson(r.stdout).map((row) => [row.proto, row.state, row.local, row.pid])).toEqual([
      ["tcp", "LISTEN", `127.0.0.1:${port}`, process.pid],
    ]);
  });

  it("finds a process running from a deleted executable; exit 1 when nothing matches", async () => {
    const r = await dragnet([
      "--home",
      home,
      "--json",
      "process",
      "-t",
      "all",
      "--deleted-exe",
      "--name",
      "^implant$",
    ]);
    expect(r.code).toBe(0);
    const rows = ndjson(r.stdout);
    expect(rows.map((row) => [row.pid, row.exeDeleted])).toEqual([[implant.pid, true]]);
    const none = await dragnet([
      "--home",
      home,
      "--json",
      "process",
      "-t",
      "all",
      "--name",
      "^no-such-process-here$",
    ]);
    expect([none.code, none.stdout]).toEqual([1, ""]);
  });

  it("refuses a bad filter before anything is signed", async () => {
    const before = (await fleet.api.listActions(100)).length;
    const r = await dragnet(["--home", home, "netstat", "-t", "all", "--remote-ip", "10.0.0.0/40"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/remote address "10\.0\.0\.0\/40" is not an IP address or CIDR/);
    const port = await dragnet(["--home", home, "netstat", "-t", "all", "--local-port", "70000"]);
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/--local-port takes a whole number up to 65535, not "70000"/);
    expect((await fleet.api.listActions(100)).length).toBe(before);
  });
});

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAlive } from "../../common/pids.js";
import type { LabState } from "../../console/lab/lab.js";
import { removeLabPostgres } from "../../console/lab/postgres.js";
import { dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// `dragnet lab up --store postgres --coordinators 2`: a PostgreSQL cluster of
// the lab's own (run as the postgres user, a generated password), two
// coordinators sharing it, and a console that goes on through the second when
// the first is killed; `lab down` stops every process it started.

let home: string;
let lab: LabState;

beforeAll(async () => {
  requireBuild();
  home = tempDir("dragnet-lab-pg-");
  const up = await dragnet([
    "--home",
    home,
    "lab",
    "up",
    "--agents",
    "2",
    "--store",
    "postgres",
    "--coordinators",
    "2",
  ]);
  expect(up.stderr + up.stdout).toMatch(
    /coordinators localhost:\d+, localhost:\d+ on postgres:\/\/dragnet@127\.0\.0\.1/,
  );
  expect(up.code).toBe(0);
  lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
}, 120_000);

afterAll(async () => {
  const current = home ? (JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState) : undefined;
  if (current?.running) await dragnet(["--home", home, "lab", "down"]);
  // Its data may live outside the lab directory (where the postgres user can reach it): removed too.
  if (current?.postgres) removeLabPostgres(current.postgres, home);
});

describe("the lab on PostgreSQL with two coordinators", () => {
  it("refuses two coordinators on SQLite files, saying why", async () => {
    const refused = await dragnet(["--home", tempDir(), "lab", "up", "--coordinators", "2"]);
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining("needs --store postgres")]);
  });

  it("runs PostgreSQL as its own user with a password only the coordinators read", () => {
    const pg = lab.postgres!;
    expect(isAlive(pg.pid)).toBe(true);
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pg.pid}/status`, "utf8"))![1];
    expect(process.getuid?.() === 0 ? uid !== "0" : true).toBe(true);
    expect(readFileSync(`/proc/${pg.pid}/cmdline`, "utf8")).toContain("postgres");
    const config = JSON.parse(readFileSync(lab.coordinators![1]!.config, "utf8"));
    expect(config.store).toEqual({ postgres: pg.url, passwordFile: "postgres.password" });
    expect(pg.url).not.toMatch(/:[^/@]*@/); // no password in the URL
    expect(lab.coordinators!.map((c) => isAlive(c.pid))).toEqual([true, true]);
  });

  it("shows one fleet through either coordinator, and goes on through the second when the first dies", async () => {
    const [first, second] = lab.coordinators!;
    const sweep = await dragnet(["--home", home, "--json", "file", "-t", "all", "--path", "/etc/hostname"]);
    expect(sweep.code).toBe(0);
    expect(ndjson(sweep.stdout).filter((r) => r.path === "/etc/hostname")).toHaveLength(2);
    const listed = async (address: string) =>
      ndjson(
        (await dragnet(["--home", home, "--coordinator", address, "--json", "action", "list"])).stdout,
      ).map((a) => a.id);
    const throughFirst = await listed(first!.address);
    expect(throughFirst).toHaveLength(1);
    expect(await listed(second!.address)).toEqual(throughFirst);
    process.kill(first!.pid, "SIGKILL");
    const again = await dragnet(["--home", home, "--json", "file", "-t", "all", "--path", "/etc/hostname"]);
    expect(again.code).toBe(0);
    expect(ndjson(again.stdout).filter((r) => r.path === "/etc/hostname")).toHaveLength(2);
    expect(await listed(second!.address)).toHaveLength(2);
  }, 60_000);

  it("lab down stops every process it started, PostgreSQL last", async () => {
    const down = await dragnet(["--home", home, "--json", "lab", "down"]);
    expect(down.code).toBe(0);
    const roles = ndjson(down.stdout).map((r) => `${r.role}: ${r.state}`);
    expect(roles.at(-1)).toBe("postgres: stopped");
    expect(roles).toContain("coordinator 1: gone");
    expect(roles).toContain("coordinator 2: stopped");
    expect(isAlive(lab.postgres!.pid)).toBe(false);
  });
});

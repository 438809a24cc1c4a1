import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { Codes, DragnetError, freePort, writeFileAtomic } from "../../common/mod.js";
import { type StartedProcess, startDetached, waitFor } from "./processes.js";

// A PostgreSQL cluster of the lab's own (`lab up --store postgres`), and of
// tests: initdb with a generated password, the server on a free loopback port
// and a socket in its own directory, run as the `postgres` user when started
// by root (PostgreSQL refuses to run as root), stopped by its pid. Never one
// that happens to run on the machine.

export interface LabPostgres extends StartedProcess {
  port: number;
  /** postgres://dragnet@127.0.0.1:PORT/dragnet (the password is in passwordFile). */
  url: string;
  /** 0600, for the coordinators' `store.passwordFile`. */
  passwordFile: string;
  /** The cluster's directory (data, socket), removed by removeLabPostgres. */
  home: string;
}

/** Debian's server programs (package postgresql) live in /usr/lib/postgresql/<version>/bin, not on PATH. */
export function postgresBin(name: string): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", name)))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new DragnetError(Codes.CONFIG, `${name} is not installed (Debian: apt-get install postgresql)`);
  return join(root, versions[0]!, "bin", name);
}

/** The postgres user's uid and gid when running as root; nothing otherwise (the server runs as us). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    return {
      uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })),
      gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })),
    };
  } catch {
    throw new DragnetError(
      Codes.CONFIG,
      "PostgreSQL does not run as root and there is no postgres user (Debian: apt-get install postgresql)",
    );
  }
}

/** Whether the server's user can reach `dir` (root's home is often closed to others). */
function reachable(dir: string, user: { uid: number; gid: number } | undefined): boolean {
  if (!user) return true;
  try {
    execFileSync("test", ["-x", dir], { uid: user.uid, gid: user.gid, stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes and starts a cluster under `parent` (`<parent>/postgres`). Where the postgres user
 * cannot reach `parent`, the cluster lives under /var/tmp and `<parent>/postgres` links to it.
 */
export async function startLabPostgres(parent: string, logFile: string): Promise<LabPostgres> {
  const user = serverUser();
  const link = join(parent, "postgres");
  rmSync(link, { recursive: true, force: true });
  let home = link;
  if (reachable(parent, user)) {
    mkdirSync(home, { mode: 0o700 });
  } else {
    home = mkdtempSync("/var/tmp/dragnet-postgres-");
    symlinkSync(home, link);
  }
  if (user) chownSync(home, user.uid, user.gid);
  const data = join(home, "data");
  const password = randomBytes(24).toString("base64url");
  const passwordFile = join(parent, "postgres.password");
  writeFileAtomic(passwordFile, `${password}\n`, 0o600);
  // initdb reads the superuser's password from a file the server's user can read; it goes after.
  const initPassword = join(home, "initdb.password");
  writeFileSync(initPassword, `${password}\n`, { mode: 0o600 });
  if (user) chownSync(initPassword, user.uid, user.gid);
  try {
    execFileSync(
      postgresBin("initdb"),
      [
        "-D",
        data,
        "-U",
        "dragnet",
        `--pwfile=${initPassword}`,
        "-A",
        "scram-sha-256",
        "-E",
        "UTF8",
        "--no-sync",
      ],
      { ...user, stdio: ["ignore", "ignore", "pipe"] },
    );
  } catch (err) {
    throw new DragnetError(
      Codes.CONFIG,
      `initdb failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`,
    );
  } finally {
    rmSync(initPassword, { force: true });
  }
  const port = await freePort();
  const proc = startDetached(
    postgresBin("postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      home,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "max_connections=200",
    ],
    { log: logFile, env: { LANG: "C.UTF-8", PATH: "/usr/bin:/bin" }, cwd: home, marker: data, ...user },
  );
  const env = { ...process.env, PGPASSWORD: password };
  await waitFor("PostgreSQL to accept connections", 30_000, () => {
    try {
      execFileSync(postgresBin("pg_isready"), ["-h", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
      return true;
    } catch {
      return undefined;
    }
  });
  execFileSync(postgresBin("createdb"), ["-h", "127.0.0.1", "-p", String(port), "-U", "dragnet", "dragnet"], {
    env,
    stdio: "ignore",
  });
  return { ...proc, port, url: `postgres://dragnet@127.0.0.1:${port}/dragnet`, passwordFile, home };
}

/** Removes a stopped cluster's files (and the link to them). */
export function removeLabPostgres(pg: Pick<LabPostgres, "home">, parent: string): void {
  rmSync(pg.home, { recursive: true, force: true });
  rmSync(join(parent, "postgres"), { recursive: true, force: true });
}

import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

// A package database the test owns: a root with dpkg's status file, file
// lists and md5sums, as dpkg itself writes them (dpkg --root reads it), for
// the modules that ask which package owns a file and what it should hash to.
// MD5s come from md5sum, not from Dragnet's code.

export const md5sum = (path: string): string =>
  execFileSync("md5sum", [path], { encoding: "utf8" }).split(" ")[0]!;

/** An empty dpkg database under `root`. */
export function makePackageRoot(root: string): void {
  mkdirSync(join(root, "var/lib/dpkg/info"), { recursive: true });
  mkdirSync(join(root, "var/lib/dpkg/updates"), { recursive: true });
  writeFileSync(join(root, "var/lib/dpkg/status"), "");
}

/** Installs `files` (root-relative path → content) as package `name`: written, listed and checksummed. */
export function installFakePackage(
  root: string,
  name: string,
  files: Record<string, string>,
  options: { version?: string; conffiles?: string[] } = {},
): void {
  const info = join(root, "var/lib/dpkg/info");
  const dirs = new Set<string>();
  const sums: string[] = [];
  const lists: string[] = [];
  for (const [rel, content] of Object.entries(files)) {
    const path = join(root, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content, { mode: rel.includes("/bin/") ? 0o755 : 0o644 });
    for (let d = dirname(`/${rel}`); d !== "/"; d = dirname(d)) dirs.add(d);
    lists.push(`/${rel}`);
    if (!options.conffiles?.includes(`/${rel}`)) sums.push(`${md5sum(path)}  ${rel}`);
  }
  const conffiles = (options.conffiles ?? []).map((c) => ` ${c} ${md5sum(join(root, c))}`);
  appendFileSync(
    join(root, "var/lib/dpkg/status"),
    `Package: ${name}\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: Test <t@example.org>\nArchitecture: amd64\nVersion: ${options.version ?? "1.0-1"}\n${conffiles.length ? `Conffiles:\n${conffiles.join("\n")}\n` : ""}Description: test package\n\n`,
  );
  writeFileSync(join(info, `${name}.list`), `${["/.", ...[...dirs].sort(), ...lists].join("\n")}\n`);
  writeFileSync(join(info, `${name}.md5sums`), `${sums.join("\n")}\n`);
}

/**
 * What dpkg does to a packaged file on upgrade, in dpkg's order and under its
 * lock: the new file moved into place first, its MD5 written to the package's
 * md5sums after (`pauseMs` later: long enough for a watch to see the file
 * while the record is still the old one). Returns once dpkg's lock is free.
 */
export function upgradePackagedFile(
  root: string,
  name: string,
  rel: string,
  content: string,
  pauseMs = 500,
): void {
  const staged = join(root, "var/lib/dpkg/tmp.ci", rel.replaceAll("/", "_"));
  mkdirSync(dirname(staged), { recursive: true });
  writeFileSync(staged, content, { mode: 0o755 });
  const sums = join(root, "var/lib/dpkg/info", `${name}.md5sums`);
  const line = new RegExp(`^[0-9a-f]{32}(?=  ${rel.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$)`, "m");
  const text = readFileSync(sums, "utf8");
  if (!line.test(text)) throw new Error(`${name} does not list ${rel}`);
  writeFileSync(`${sums}.new`, text.replace(line, md5sum(staged)));
  const lock = join(root, "var/lib/dpkg/lock");
  writeFileSync(lock, "", { flag: "a" });
  execFileSync("flock", [
    lock,
    "sh",
    "-c",
    'mv "$1" "$2" && sleep "$3" && mv "$4" "$5"',
    "sh",
    staged,
    join(root, rel),
    String(pauseMs / 1000),
    `${sums}.new`,
    sums,
  ]);
}

import type { Command } from "commander";
import type { AccountParams, AccountResult } from "../../proto/api.js";
import { addActionFlags, handle, uint32 } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet account`: who can log in where — uid-0 accounts besides root,
// empty passwords, sudo rules, recent logins. One row per user, its flags
// first; with the full answer also one row per sudoers rule and per wtmp
// login (the "kind" column tells them apart; --users-only leaves them out).

/** What matters at a glance about a user: a second root, a login without a password. */
function flagsOf(u: AccountResult["users"][number]): string {
  const flags: string[] = [];
  if (u.uid === 0) flags.push(u.name === "root" ? "uid0" : "UID0-NOT-ROOT");
  if (u.passwordState === "empty") flags.push("EMPTY-PASSWORD");
  return flags.join(" ");
}

const formatter: ModuleFormatter<AccountResult> = {
  columns: [
    { key: "kind", header: "kind" },
    { key: "flags", header: "flags" },
    { key: "user", header: "user" },
    { key: "uid", header: "uid" },
    { key: "gid", header: "gid" },
    { key: "passwordState", header: "password" },
    { key: "groups", header: "groups", show: (v) => (Array.isArray(v) ? v.join(",") : "") },
    { key: "shell", header: "shell" },
    { key: "home", header: "home" },
    { key: "lastLogin", header: "last login" },
    { key: "from", header: "from" },
    { key: "detail", header: "detail" },
  ],
  rows: (r) => [
    ...r.users.map((u) => ({
      kind: "user",
      flags: flagsOf(u),
      user: u.name,
      uid: u.uid,
      gid: u.gid,
      passwordState: u.passwordState,
      groups: u.groups,
      shell: u.shell,
      home: u.home,
      lastLogin: isoTime(u.lastLoginMs),
      from: [u.lastLoginLine, u.lastLoginFrom].filter(Boolean).join(" "),
      gecos: u.gecos,
      passwordChangedDay: u.passwordChangedDay,
      detail: u.gecos,
    })),
    ...r.sudoers.map((s) => ({
      kind: `sudo ${s.kind}`,
      detail: s.rule,
      from: `${s.path}:${s.line}`,
      path: s.path,
      line: s.line,
    })),
    ...r.logins.map((l) => ({
      kind: l.type === "reboot" ? "boot" : "login",
      user: l.user,
      lastLogin: isoTime(l.loginMs),
      from: [l.line, l.host].filter(Boolean).join(" "),
      detail: l.logoutMs ? `${l.end} ${isoTime(l.logoutMs)}` : l.end,
      loginMs: l.loginMs,
      logoutMs: l.logoutMs,
      end: l.end,
    })),
  ],
};

interface AccountFlags {
  user?: string;
  uid0?: boolean;
  passwordState?: string;
  usersOnly?: boolean;
  maxLogins?: number;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("account")
    .description(
      "local users (uid, password state — never the hash —, groups, last login), groups, sudoers rules, wtmp logins",
    )
    .option("--user <regex>", "regex on the user name")
    .option("--uid0", "only users with uid 0")
    .option(
      "--password-state <states>",
      "only these password states, comma-separated: locked, empty, set, expired, none",
    )
    .option("--users-only", "the users alone: no groups, sudoers or logins")
    .option(
      "--max-logins <n>",
      "at most this many wtmp logins and boots, newest first (default 1000; the rest counted)",
      uint32("--max-logins"),
    );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet account -t all --uid0 --users-only                      # a second root anywhere?
  dragnet account -t all --password-state empty,set --users-only  # who can log in with a password
  dragnet account -t 'hostname == "web-7"' --user '^deploy$'      # one user: groups, last logins
  dragnet account -t 'tags.env == "prod"' --json | jq 'select(.kind == "sudo user")'`,
  );
  cmd.action(
    handle(async (flags: AccountFlags & Parameters<SendAction>[1], command: Command) => {
      // An unknown state is refused by the module's own check, which send runs before signing.
      const states = (flags.passwordState ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const params: AccountParams = {
        user: flags.user ?? "",
        uid0: flags.uid0 ?? false,
        passwordStates: [...new Set(states)],
        usersOnly: flags.usersOnly ?? false,
        maxLogins: flags.maxLogins ?? 0,
      };
      return send(command, flags, nameWith("account", params), [
        { module: { $case: "account", value: params } },
      ]);
    }),
  );
}

export const accountConsole = defineConsoleModule({
  name: "account",
  commands: ["account"],
  register: ({ program, send }) => register(program, send),
  formatter,
});

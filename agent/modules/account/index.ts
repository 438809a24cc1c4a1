import { join } from "node:path";
import type { Account, AccountParams, AccountResult } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";
import { boundErrors } from "../error-list.js";
import { packageRoot } from "../host/package-files.js";
import { readGroup, readPasswd } from "../host/passwd.js";
import { defineModule } from "../registry.js";
import { checkAccount, DEFAULT_MAX_LOGINS } from "./check.js";
import { readLastlog, readWtmp } from "./logins.js";
import { passwordState, readShadow } from "./shadow.js";
import { readSudoers } from "./sudoers.js";

// `account`: who can log in here and how — local users (passwd) with their
// password state from shadow (never the hash), supplementary groups and last
// login (lastlog); uid-0 accounts besides root; groups; every sudoers rule;
// wtmp's logins and boots. Local files only: users from LDAP or sssd are not
// seen (NSS is not asked, so a test tree and a mounted image read the same).

export interface AccountOptions {
  /** The tree whose /etc and /var/log are read ("/" on an agent). */
  root: string;
  signal: AbortSignal;
  /** The clock password expiry is weighed against (tests fix it). */
  nowMs?: number;
}

export async function listAccounts(
  p: AccountParams,
  { root, signal, nowMs }: AccountOptions,
): Promise<AccountResult> {
  const userRe = optionalRegex("account: user regex", p.user);
  const today = Math.floor((nowMs ?? Date.now()) / 86_400_000);
  const result: AccountResult = {
    users: [],
    groups: [],
    sudoers: [],
    logins: [],
    extraUid0: [],
    errors: [],
    loginsLeftOut: 0,
  };
  const [passwd, group, shadow] = await Promise.all([readPasswd(root), readGroup(root), readShadow(root)]);
  result.errors.push(...passwd.errors, ...group.errors, ...shadow.errors);
  const lastlog = await readLastlog(
    join(root, "var/log/lastlog"),
    passwd.entries.map((u) => u.uid),
    result.errors,
  );

  // Supplementary groups: the groups whose member list names the user (as initgroups(3) finds them).
  const memberOf = new Map<string, string[]>();
  for (const g of group.entries)
    for (const m of g.members) memberOf.set(m, [...(memberOf.get(m) ?? []), g.name]);

  result.extraUid0 = passwd.entries.filter((u) => u.uid === 0 && u.name !== "root").map((u) => u.name);
  const filtered = Boolean(userRe || p.uid0 || p.passwordStates.length);
  for (const u of passwd.entries) {
    if (userRe && !userRe.test(u.name)) continue;
    if (p.uid0 && u.uid !== 0) continue;
    const state = passwordState(u, shadow.entries.get(u.name), today);
    if (p.passwordStates.length && !p.passwordStates.includes(state)) continue;
    const last = lastlog.get(u.uid);
    const account: Account = {
      name: u.name,
      uid: u.uid,
      gid: u.gid,
      gecos: u.gecos,
      home: u.home,
      shell: u.shell,
      passwordState: state,
      passwordChangedDay: shadow.entries.get(u.name)?.changed ?? 0,
      groups: memberOf.get(u.name) ?? [],
      lastLoginMs: last?.ms ?? 0,
      lastLoginFrom: last?.host ?? "",
      lastLoginLine: last?.line ?? "",
    };
    result.users.push(account);
  }
  if (p.usersOnly) return result;

  result.groups = group.entries.map((g) => ({ name: g.name, gid: g.gid, members: g.members }));
  const sudoers = await readSudoers(root);
  result.sudoers = sudoers.rules;
  result.errors.push(...sudoers.errors);
  // With a user filter, the chosen users' logins only (boots belong to nobody). A
  // name regex alone is tried on wtmp's names too: users from LDAP log in as well.
  const chosen = new Set(result.users.map((u) => u.name));
  const byName = userRe && !p.uid0 && !p.passwordStates.length ? userRe : undefined;
  const wtmp = await readWtmp(join(root, "var/log/wtmp"), {
    max: p.maxLogins || DEFAULT_MAX_LOGINS,
    wanted: filtered
      ? (l) => l.type === "user" && (byName ? byName.test(l.user) : chosen.has(l.user))
      : undefined,
    signal,
  });
  result.logins = wtmp.logins;
  result.loginsLeftOut = wtmp.leftOut;
  result.errors.push(...wtmp.errors);
  return result;
}

export const accountModule = defineModule({
  name: "account",
  check: checkAccount,
  async run(p, ctx) {
    const result = await listAccounts(p, { root: packageRoot(), signal: ctx.signal });
    result.errors = boundErrors(result.errors);
    return { found: result.users.length > 0, result };
  },
});

import { spawnSync } from "node:child_process";
import { isIPv4 } from "node:net";
import { Codes, DragnetError } from "../../../common/mod.js";
import { findTool } from "../../system-tools.js";
import type { Peer } from "./check.js";

// The rules that isolate a host, in a table (nftables) or chains (iptables)
// of the agent's own, so that lifting isolation removes exactly what it added
// and leaves every other rule alone. Everything is dropped — in, out and
// forwarded, established connections included — except loopback, the
// agent's NATS servers, DNS to the resolvers if asked, IPv6 neighbour
// discovery (without it no IPv6 link works), and the action's allow-list.

export const NFT_TABLE = "dragnet_isolation";
const IPT_CHAINS = { input: "DRAGNET_ISO_IN", output: "DRAGNET_ISO_OUT", forward: "DRAGNET_ISO_FWD" };

export interface IsolationPlan {
  /** The agent's NATS servers: TCP to their port only. */
  nats: Array<{ ip: string; port: number }>;
  dns: string[];
  allow: Peer[];
}

export type FirewallMethod = "nftables" | "iptables";

function run(cmd: string, args: string[], input?: string): { ok: boolean; out: string } {
  const path = findTool(cmd);
  if (!path) return { ok: false, out: `${cmd} is not installed` };
  const r = spawnSync(path, args, { input, encoding: "utf8", timeout: 15_000 });
  if (r.error) return { ok: false, out: r.error.message };
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

const has = (cmd: string) => findTool(cmd) !== undefined;

/** nftables when the `nft` command is there, else iptables; refuses when neither is. */
export function firewallMethod(): FirewallMethod {
  const forced = process.env.DRAGNET_FIREWALL;
  if (forced === "nftables" || forced === "iptables") return forced;
  if (has("nft")) return "nftables";
  if (has("iptables")) return "iptables";
  throw new DragnetError(
    Codes.MODULE_FAILED,
    "isolate: neither nft (nftables) nor iptables is installed: nothing to isolate with",
  );
}

const familyOf = (ip: string): 4 | 6 => (isIPv4(ip) ? 4 : 6);

/** The nft script: one transaction that replaces the agent's table whole. */
export function nftScript(plan: IsolationPlan): string {
  const ipk = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");
  const inRules: string[] = ['iif "lo" accept'];
  const outRules: string[] = ['oif "lo" accept'];
  for (const t of ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit", "nd-router-advert"]) {
    inRules.push(`icmpv6 type ${t} accept`);
    outRules.push(`icmpv6 type ${t} accept`);
  }
  for (const { ip, port } of plan.nats) {
    const k = ipk(familyOf(ip));
    outRules.push(`${k} daddr ${ip} tcp dport ${port} accept comment "NATS"`);
    inRules.push(`${k} saddr ${ip} tcp sport ${port} accept comment "NATS"`);
  }
  for (const ip of plan.dns) {
    const k = ipk(familyOf(ip));
    for (const proto of ["udp", "tcp"]) {
      outRules.push(`${k} daddr ${ip} ${proto} dport 53 accept comment "DNS"`);
      inRules.push(`${k} saddr ${ip} ${proto} sport 53 accept comment "DNS"`);
    }
  }
  for (const p of plan.allow) {
    const k = ipk(p.family);
    if (p.port === undefined) {
      outRules.push(`${k} daddr ${p.net} accept comment "allowed"`);
      inRules.push(`${k} saddr ${p.net} accept comment "allowed"`);
      continue;
    }
    // Either side may have opened the connection: to the peer's port, or from it to ours.
    for (const proto of ["tcp", "udp"]) {
      outRules.push(`${k} daddr ${p.net} ${proto} dport ${p.port} accept comment "allowed"`);
      outRules.push(`${k} daddr ${p.net} ${proto} sport ${p.port} accept comment "allowed"`);
      inRules.push(`${k} saddr ${p.net} ${proto} sport ${p.port} accept comment "allowed"`);
      inRules.push(`${k} saddr ${p.net} ${proto} dport ${p.port} accept comment "allowed"`);
    }
  }
  const chain = (name: string, hook: string, rules: string[]) =>
    [
      `  chain ${name} {`,
      `    type filter hook ${hook} priority -200; policy drop;`,
      ...rules.map((r) => `    ${r}`),
      "  }",
    ].join("\n");
  return [
    // Declaring, then deleting, then defining: the table is replaced whole, and no error if it was not there.
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    chain("input", "input", inRules),
    chain("output", "output", outRules),
    chain("forward", "forward", []),
    "}",
    "",
  ].join("\n");
}

/** iptables and ip6tables commands (arguments) that build the agent's chains. */
export function iptablesCommands(
  plan: IsolationPlan,
): Array<{ cmd: "iptables" | "ip6tables"; args: string[] }> {
  const out: Array<{ cmd: "iptables" | "ip6tables"; args: string[] }> = [];
  for (const cmd of ["iptables", "ip6tables"] as const) {
    const fam: 4 | 6 = cmd === "iptables" ? 4 : 6;
    const add = (chain: string, ...rule: string[]) => out.push({ cmd, args: ["-w", "-A", chain, ...rule] });
    for (const c of Object.values(IPT_CHAINS)) out.push({ cmd, args: ["-w", "-N", c] });
    add(IPT_CHAINS.input, "-i", "lo", "-j", "ACCEPT");
    add(IPT_CHAINS.output, "-o", "lo", "-j", "ACCEPT");
    if (fam === 6) {
      for (const t of ["135", "136", "133", "134"]) {
        add(IPT_CHAINS.input, "-p", "icmpv6", "--icmpv6-type", t, "-j", "ACCEPT");
        add(IPT_CHAINS.output, "-p", "icmpv6", "--icmpv6-type", t, "-j", "ACCEPT");
      }
    }
    for (const { ip, port } of plan.nats.filter((n) => familyOf(n.ip) === fam)) {
      add(IPT_CHAINS.output, "-d", ip, "-p", "tcp", "--dport", String(port), "-j", "ACCEPT");
      add(IPT_CHAINS.input, "-s", ip, "-p", "tcp", "--sport", String(port), "-j", "ACCEPT");
    }
    for (const ip of plan.dns.filter((d) => familyOf(d) === fam)) {
      for (const proto of ["udp", "tcp"]) {
        add(IPT_CHAINS.output, "-d", ip, "-p", proto, "--dport", "53", "-j", "ACCEPT");
        add(IPT_CHAINS.input, "-s", ip, "-p", proto, "--sport", "53", "-j", "ACCEPT");
      }
    }
    for (const p of plan.allow.filter((a) => a.family === fam)) {
      if (p.port === undefined) {
        add(IPT_CHAINS.output, "-d", p.net, "-j", "ACCEPT");
        add(IPT_CHAINS.input, "-s", p.net, "-j", "ACCEPT");
        continue;
      }
      for (const proto of ["tcp", "udp"]) {
        for (const dir of ["--dport", "--sport"]) {
          add(IPT_CHAINS.output, "-d", p.net, "-p", proto, dir, String(p.port), "-j", "ACCEPT");
          add(IPT_CHAINS.input, "-s", p.net, "-p", proto, dir, String(p.port), "-j", "ACCEPT");
        }
      }
    }
    for (const c of Object.values(IPT_CHAINS)) add(c, "-j", "DROP");
    // First in the built-in chains: nothing earlier can accept what isolation drops.
    out.push({ cmd, args: ["-w", "-I", "INPUT", "1", "-j", IPT_CHAINS.input] });
    out.push({ cmd, args: ["-w", "-I", "OUTPUT", "1", "-j", IPT_CHAINS.output] });
    out.push({ cmd, args: ["-w", "-I", "FORWARD", "1", "-j", IPT_CHAINS.forward] });
  }
  return out;
}

/** Applies the plan; returns the rules as applied, for the record. Throws MODULE_FAILED saying what the firewall said. */
export function applyIsolation(method: FirewallMethod, plan: IsolationPlan): string {
  if (method === "nftables") {
    const script = nftScript(plan);
    const r = run("nft", ["-f", "-"], script);
    if (!r.ok)
      throw new DragnetError(Codes.MODULE_FAILED, `isolate: nft refused the rules: ${r.out.slice(0, 500)}`);
    return script;
  }
  removeIsolation("iptables");
  const commands = iptablesCommands(plan);
  for (const c of commands) {
    const r = run(c.cmd, c.args);
    if (!r.ok) {
      removeIsolation("iptables");
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `isolate: ${c.cmd} ${c.args.join(" ")} failed: ${r.out.slice(0, 500)}`,
      );
    }
  }
  return commands.map((c) => `${c.cmd} ${c.args.join(" ")}`).join("\n");
}

/** Removes exactly the agent's own table or chains; whether there was anything to remove. */
export function removeIsolation(method: FirewallMethod): boolean {
  if (method === "nftables") return run("nft", ["delete", "table", "inet", NFT_TABLE]).ok;
  let removed = false;
  for (const cmd of ["iptables", "ip6tables"]) {
    for (const [builtin, chain] of [
      ["INPUT", IPT_CHAINS.input],
      ["OUTPUT", IPT_CHAINS.output],
      ["FORWARD", IPT_CHAINS.forward],
    ] as const) {
      while (run(cmd, ["-w", "-D", builtin, "-j", chain]).ok) removed = true;
      run(cmd, ["-w", "-F", chain]);
      if (run(cmd, ["-w", "-X", chain]).ok) removed = true;
    }
  }
  return removed;
}

/** Whether the agent's rules are in force now. */
export function isolationInForce(method: FirewallMethod): boolean {
  if (method === "nftables") return run("nft", ["list", "table", "inet", NFT_TABLE]).ok;
  return run("iptables", ["-w", "-C", "OUTPUT", "-j", IPT_CHAINS.output]).ok;
}

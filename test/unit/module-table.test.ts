import { readFileSync } from "node:fs";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Command } from "commander";
import * as esbuild from "esbuild";
import { describe, expect, it } from "vitest";
import { moduleChecks } from "../../agent/modules/checks.js";
import { agentModules } from "../../agent/modules/modules.gen.js";
import { Acl, RESPONSE_MODULES, TWO_PERSON_MODULES } from "../../common/mod.js";
import { NOT_CARRIED } from "../../console/mig-import.js";
import { consoleModules } from "../../console/modules/modules.gen.js";
import { MODULE_KINDS, type ModuleName, OperationResult } from "../../proto/api.js";

// Every module is classified everywhere it matters. The list of modules is
// read here from agent.proto itself (not from the generated tables): each
// case of the Operation oneof must have its agent module, its parameter
// check, its console command and formatter, and its kind, and the ACL's
// response list must be exactly the modules the proto calls response.

const proto = readFileSync(new URL("../../proto/dragnet/v1/agent.proto", import.meta.url), "utf8");

/** The cases of a oneof, as written: name, field number and the text of its options. */
function oneofCases(message: string): Array<{ name: string; field: number; options: string }> {
  const body = new RegExp(`message ${message} \\{[\\s\\S]*?oneof module \\{([\\s\\S]*?)\\}`).exec(proto)?.[1];
  expect(body, `${message} has a oneof module`).toBeDefined();
  return [...body!.matchAll(/^\s*\w+ (\w+) = (\d+)(?: \[([^\]]*)\])?;/gm)].map((m) => ({
    name: m[1]!,
    field: Number(m[2]),
    options: m[3] ?? "",
  }));
}

const operations = oneofCases("Operation");
const results = oneofCases("OperationResult");

describe("the module table", () => {
  it("reads eleven or more modules from the proto, each with a result case", () => {
    expect(operations.length).toBeGreaterThanOrEqual(11);
    expect(results.map((r) => r.name).sort()).toEqual(operations.map((o) => o.name).sort());
  });

  it.each(operations)(
    "$name has a kind, an agent module, a check, a console command and a formatter",
    (op) => {
      const name = op.name as ModuleName;
      const kind = /\(kind\) = MODULE_KIND_(INVESTIGATION|RESPONSE|SENSITIVE)/
        .exec(op.options)?.[1]
        ?.toLowerCase();
      expect(kind, `${name}'s case in agent.proto says its kind`).toBeDefined();
      expect(MODULE_KINDS[name]).toBe(kind);

      const agent = agentModules[name];
      expect(agent.name).toBe(name);
      expect(typeof agent.run).toBe("function");
      // The check the console runs before signing is the very one the agent runs.
      expect(agent.check).toBe(moduleChecks[name]);

      const console = consoleModules[name];
      expect(console.name).toBe(name);
      expect(console.formatter.columns.length).toBeGreaterThan(0);
      // The formatter takes the module's own (empty) result, as an agent's answer decodes.
      const field = results.find((r) => r.name === name)!.field;
      const empty = OperationResult.decode(
        new BinaryWriter().tag(field, WireType.LengthDelimited).bytes(new Uint8Array()).finish(),
      );
      expect(empty.module?.$case).toBe(name);
      expect(Array.isArray(console.formatter.rows(empty.module!.value as never))).toBe(true);

      // Its commands exist once registered, and only then.
      const program = new Command("dragnet");
      const agents = program.command("agents");
      const find = (path: string) =>
        path
          .split(" ")
          .reduce<Command | undefined>((c, n) => c?.commands.find((x) => x.name() === n), program);
      expect(console.commands.length).toBeGreaterThan(0);
      for (const path of console.commands) expect(find(path), `before: ${path}`).toBeUndefined();
      console.register({ program, agents, send: async () => 0 });
      for (const path of console.commands) expect(find(path), `dragnet ${path}`).toBeDefined();
    },
  );

  it("the ACL's lists are the proto's kinds: response and sensitive modules need two people by default", () => {
    const ofKind = (k: string) =>
      operations.filter((o) => o.options.includes(`MODULE_KIND_${k}`)).map((o) => o.name);
    expect([...RESPONSE_MODULES].sort()).toEqual(ofKind("RESPONSE").sort());
    const two = [...ofKind("RESPONSE"), ...ofKind("SENSITIVE")];
    expect([...TWO_PERSON_MODULES].sort()).toEqual(two.sort());
    expect(two).toContain("memory");
    for (const acl of [Acl.defaults(), new Acl({ default: { minWeight: 1 } })]) {
      for (const o of operations)
        expect(acl.ruleFor(o.name).minWeight, o.name).toBe(two.includes(o.name) ? 2 : 1);
    }
  });

  it("a MIG module is either carried by a console module or named as not carried, never both", () => {
    const carried = Object.values(consoleModules).flatMap((m) => (m.mig ? [m.mig.module] : []));
    expect(carried.sort()).toEqual([
      "file",
      "memory",
      "netstat",
      "ping",
      "pkg",
      "sshkey",
      "timedrift",
      "yara",
    ]);
    for (const m of carried) expect(NOT_CARRIED[m], m).toBeUndefined();
  });
});

describe("the console bundle", () => {
  it("carries the modules' parameter checks and no other agent or coordinator code", async () => {
    const out = await esbuild.build({
      entryPoints: ["console/main.ts"],
      bundle: true,
      platform: "node",
      format: "esm",
      packages: "external",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(out.metafile.inputs);
    const agent = inputs.filter((f) => f.startsWith("agent/"));
    // The checks, the helpers they share, and the file module's criteria (its check compiles them).
    const allowed = /^agent\/modules\/(checks(\.gen)?\.ts|check-kit\.ts|\w+\/check\.ts|file\/criteria\.ts)$/;
    expect(agent.filter((f) => !allowed.test(f))).toEqual([]);
    expect(agent).toContain("agent/modules/file/check.ts");
    expect(inputs.filter((f) => f.startsWith("coordinator/"))).toEqual([]);
  });
});

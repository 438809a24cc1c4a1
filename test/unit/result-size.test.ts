import { describe, expect, it } from "vitest";
import { encodeWithin } from "../../agent/result-size.js";
import { CommandResult, CommandStatus, type FileMatch } from "../../proto/mod.js";

// The cut of an answer too large for one NATS message: within the limit,
// flagged, counted, and refused only when a single entry is too large.

function resultWith(paths: string[]): CommandResult {
  return CommandResult.fromPartial({
    commandId: "c1",
    actionId: "a1",
    agentId: "agent-1",
    status: CommandStatus.COMMAND_STATUS_SUCCESS,
    operations: [
      {
        found: true,
        module: {
          $case: "file",
          value: {
            matches: paths.map((path) => ({ path, search: "s1" }) as FileMatch),
            errors: ["e1", "e2"],
          },
        },
      },
    ],
  });
}

describe("encodeWithin", () => {
  it("leaves a result that fits as it is", () => {
    const r = resultWith(["/etc/passwd"]);
    const data = encodeWithin(r, 1024)!;
    expect(CommandResult.decode(data).operations[0]!.truncated).toBe(false);
    expect(Buffer.from(data).equals(Buffer.from(CommandResult.encode(r).finish()))).toBe(true);
  });

  it("cuts the longest list to fit, flags it and counts what it left out", () => {
    const paths = Array.from({ length: 20_000 }, (_, i) => `/srv/data/${"x".repeat(40)}/${i}`);
    const r = resultWith(paths);
    expect(CommandResult.encode(r).finish().length).toBeGreaterThan(1_000_000);
    const data = encodeWithin(r, 100_000)!;
    expect(data.length).toBeLessThanOrEqual(100_000);
    const op = CommandResult.decode(data).operations[0]!;
    const file = op.module?.$case === "file" ? op.module.value : undefined;
    expect(op.truncated).toBe(true);
    expect(file!.matches.length + op.omitted).toBe(20_000);
    expect(file!.matches[0]!.path).toBe(paths[0]);
    // The short list is not touched; the original is not changed.
    expect(file!.errors).toEqual(["e1", "e2"]);
    const original = r.operations[0]!.module;
    expect(original?.$case === "file" && original.value.matches.length).toBe(20_000);
  });

  it("gives up when one entry alone is over the limit", () => {
    expect(encodeWithin(resultWith(["/".repeat(5000)]), 1000)).toBeUndefined();
  });
});

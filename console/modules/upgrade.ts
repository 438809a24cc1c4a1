import { type Command, Option } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import type { UpgradeResult } from "../../proto/api.js";
import { addActionFlags, duration, handle, type SweepFlags } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet agents upgrade`: the signed action (two people by default) that
// makes agents fetch a published release (`dragnet release publish`), verify
// it, run it, and roll back unless it comes back healthy.

const formatter: ModuleFormatter<UpgradeResult> = {
  columns: [
    { key: "state", header: "state" },
    { key: "fromVersion", header: "from" },
    { key: "toVersion", header: "to" },
    { key: "sha256", header: "sha256" },
    { key: "signer", header: "signed by" },
  ],
  rows: (r) => [{ ...r }],
};

function register(agents: Command, send: SendAction): void {
  const upgrade = agents
    .command("upgrade")
    .description(
      "run a published release on the targeted agents: each fetches it, checks size, SHA-256 and signature, replaces itself, restarts, and rolls back unless healthy in time",
    )
    .requiredOption("--version <version>", "the release to run")
    .addOption(
      new Option("--health-timeout <duration>", "how long the new version has to come back")
        .argParser(duration("--health-timeout"))
        .default(60_000, "60s"),
    );
  // `agents` has a -t of its own, which commander gives the parent wherever it stands: read it there too.
  addActionFlags(upgrade, { targetRequired: false });
  upgrade.action(
    handle(async (flags: SweepFlags & { version: string; healthTimeout: number }, command: Command) => {
      const target = flags.target ?? (command.parent?.opts() as { target?: string } | undefined)?.target;
      if (!target) throw new DragnetError(Codes.PARAMS, "agents upgrade needs -t EXPR (which agents)");
      return send(command, { ...flags, target }, `upgrade to ${flags.version}`, [
        {
          module: {
            $case: "upgrade",
            value: { version: flags.version, healthTimeoutMs: flags.healthTimeout },
          },
        },
      ]);
    }),
  );
}

export const upgradeConsole = defineConsoleModule({
  name: "upgrade",
  commands: ["agents upgrade"],
  register: ({ agents, send }) => register(agents, send),
  formatter,
});

import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import type { Command } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import type { CollectResult, EvidenceItem } from "../../proto/mod.js";
import { addActionFlags, globalsOf, handle, nonNegativeInt, type SweepFlags } from "../cli-kit.js";
import { openClient } from "../home.js";
import { registerFormatter } from "../output/formatters.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { sendAction } from "../send.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet collect`: files from the agents as evidence (two signatures by
// default); `dragnet evidence list|get`: what the coordinator keeps, and a
// copy of one item, its SHA-256 checked again on the way out.

registerFormatter("collect", {
  columns: [
    { key: "path", header: "path" },
    { key: "size", header: "size" },
    { key: "sha256", header: "sha256" },
    { key: "uploadId", header: "upload" },
  ],
  rows: (r) => [{ ...(r as CollectResult) }],
});

interface CollectFlags extends SweepFlags {
  path: string;
  maxBytes?: number;
  followSymlinks?: boolean;
}

const EVIDENCE_COLUMNS = [
  { key: "id", header: "id" },
  { key: "hostname", header: "hostname" },
  { key: "path", header: "path" },
  { key: "size", header: "size" },
  { key: "sha256", header: "sha256" },
  { key: "received", header: "received" },
  { key: "collectors", header: "collected by", show: (v: unknown) => (v as string[]).join(", ") },
  { key: "status", header: "status" },
  { key: "problem", header: "problem" },
];

export function registerEvidenceCommands(program: Command): void {
  const collect = program
    .command("collect")
    .description("upload a file from each targeted agent as evidence (SHA-256 checked; needs two signatures)")
    .requiredOption("--path <path>", "the file (absolute path)")
    .option("--max-bytes <n>", "refuse files larger than this (default 1 GiB)", nonNegativeInt("--max-bytes"))
    .option("--follow-symlinks", "collect what a symlink points to (by default a symlink is refused)");
  addActionFlags(collect);
  collect.addHelpText(
    "after",
    `
Example:
  dragnet collect -t 'hostname == "web-7"' --path /var/log/auth.log --incident IR-2026-11
  dragnet evidence list && dragnet evidence get ID --out auth.log`,
  );
  collect.action(
    handle(async (flags: CollectFlags, command: Command) =>
      sendAction(command, flags, `collect ${flags.path}`, [
        {
          module: {
            $case: "collect",
            value: {
              path: flags.path,
              maxBytes: flags.maxBytes,
              followSymlinks: flags.followSymlinks ?? false,
            },
          },
        },
      ]),
    ),
  );

  const evidence = program
    .command("evidence")
    .description("files collected from agents, as the coordinator keeps them");
  evidence
    .command("list")
    .description("evidence items, newest first")
    .option("--incident <id>", "only this incident's")
    .option("--limit <n>", "how many", nonNegativeInt("--limit"), 100)
    .action(
      handle(async (flags: { incident?: string; limit: number }, command: Command) => {
        const globals = globalsOf(command);
        const api = openClient(globals);
        try {
          const items = await api.listEvidence(flags.incident ?? "", flags.limit);
          const writer = new RowWriter(formatOf(globals), EVIDENCE_COLUMNS, { withAgent: false });
          for (const i of items) writer.add({ ...i, received: isoTime(i.receivedAtMs) });
          writer.end();
          return items.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        } finally {
          api.close();
        }
      }),
    );
  evidence
    .command("get <id>")
    .description(
      "copy one item to a file; its SHA-256 is checked against the agent's before the file is kept",
    )
    .requiredOption("--out <file>", "where to write it (must not exist)")
    .action(
      handle(async (id: string, flags: { out: string }, command: Command) => {
        if (existsSync(flags.out)) {
          throw new DragnetError(Codes.PARAMS, `${flags.out} exists: evidence get never overwrites a file`);
        }
        const api = openClient(globalsOf(command));
        const tmp = `${flags.out}.part`;
        // "wx": never overwrite what is there.
        const fd = openSync(tmp, "wx", 0o600);
        let item: EvidenceItem | undefined;
        const hash = createHash("sha256");
        let size = 0;
        try {
          await api.getEvidence(
            id,
            (i) => {
              item = i;
            },
            (data) => {
              hash.update(data);
              size += data.length;
              writeSync(fd, data);
            },
          );
          fsyncSync(fd);
        } catch (err) {
          rmSync(tmp, { force: true });
          throw err;
        } finally {
          closeSync(fd);
          api.close();
        }
        const digest = hash.digest("hex");
        if (!item || digest !== item.sha256 || size !== item.size) {
          rmSync(tmp, { force: true });
          throw new DragnetError(
            Codes.MODULE_FAILED,
            `evidence ${id}: received ${size} bytes hashing to ${digest}, the record says ${item?.size} bytes, ${item?.sha256}: not kept`,
          );
        }
        renameSync(tmp, flags.out);
        process.stdout.write(
          `${flags.out}: ${size} bytes, sha256 ${digest} (checked again; ${item.status} on receipt), from ${item.hostname || item.agentId}:${item.path}\n`,
        );
        return EXIT_FOUND;
      }),
    );
}

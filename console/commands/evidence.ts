import { createHash, sign } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import { EvidenceItem } from "../../proto/api.js";
import { globalsOf, handle, nonNegativeInt, outcome, withApi } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import { loadKey } from "../home.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet evidence list|get`: what the coordinator keeps of the files agents
// collected (`dragnet collect`), and a copy of one item, its SHA-256 checked
// again on the way out.

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

export function registerEvidenceCommand(program: Command): void {
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
        return withApi(command, async (api) => {
          const items = await api.listEvidence(flags.incident ?? "", flags.limit);
          const writer = new RowWriter(formatOf(globals), EVIDENCE_COLUMNS, { withAgent: false });
          for (const i of items) writer.add({ ...i, received: isoTime(i.receivedAtMs) });
          writer.end();
          return items.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        });
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
        return withApi(command, async (api) => {
          const { item, size, sha256 } = await download(api, id, flags.out);
          outcome(
            command,
            {
              file: flags.out,
              evidence: item.id,
              size,
              sha256,
              status: item.status,
              agentId: item.agentId,
              hostname: item.hostname,
              path: item.path,
            },
            `${flags.out}: ${size} bytes, sha256 ${sha256} (checked again; ${item.status} on receipt), from ${item.hostname || item.agentId}:${item.path}`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  evidence
    .command("export <id>")
    .description("copy an item out with a custody record signed by you, and note the export on the notebook")
    .requiredOption("--out <dir>", "the directory to write the file and its custody record into")
    .option("--note <text>", "why, for whom", "")
    .action(
      handle(async (id: string, flags: { out: string; note: string }, command: Command) => {
        const globals = globalsOf(command);
        const key = loadKey(globals);
        return withApi(command, async (api) => {
          mkdirSync(flags.out, { recursive: true });
          const target = join(flags.out, `${id}.evidence`);
          const { item, sha256 } = await download(api, id, target);
          const record = {
            kind: "dragnet-custody-record",
            evidence: EvidenceItem.toJSON(item),
            exportedTo: resolve(target),
            exportedBy: key.name,
            exportedAt: new Date().toISOString(),
            sha256,
            note: flags.note,
          };
          const text = JSON.stringify(record);
          const signature = sign(null, Buffer.from(`dragnet-custody-v1\n${text}`), key.privateKey).toString(
            "base64",
          );
          writeFileSync(
            join(flags.out, `${id}.custody.json`),
            `${JSON.stringify({ record: text, keyId: key.keyId, signature }, null, 2)}\n`,
            { flag: "wx" },
          );
          const page = await api.recordCustody(item.id, "export", resolve(target), flags.note, sha256);
          outcome(
            command,
            { file: target, custodyRecord: join(flags.out, `${id}.custody.json`), sha256, page: page.seq },
            `${target} and ${id}.custody.json written; custody page ${page.seq}`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  evidence
    .command("transfer <id>")
    .description("record a hand-over of an item on its incident's notebook")
    .requiredOption("--to <who>", 'who received it ("name/organisation")')
    .option("--note <text>", "what was handed over, how", "")
    .action(
      handle(async (id: string, flags: { to: string; note: string }, command: Command) => {
        return withApi(command, async (api) => {
          const page = await api.recordCustody(id, "transfer", flags.to, flags.note, "");
          outcome(
            command,
            { page: page.seq, evidence: id, to: flags.to },
            `custody page ${page.seq}: evidence ${id} to ${flags.to}`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  evidence
    .command("verify <id>")
    .description("hash the stored file again (exit 0 when it still matches, 1 when not)")
    .action(
      handle(async (id: string, _flags: unknown, command: Command) => {
        return withApi(command, async (api) => {
          const r = await api.verifyEvidence(id);
          outcome(
            command,
            { intact: r.ok, sha256: r.sha256, expected: r.expected, problem: r.problem || null },
            r.ok
              ? `intact: sha256 ${r.sha256}`
              : `NOT INTACT: ${r.problem} (recorded ${r.expected}, now ${r.sha256 || "-"})`,
          );
          return r.ok ? EXIT_FOUND : EXIT_NOTHING;
        });
      }),
    );

  evidence
    .command("register")
    .description("enter evidence gathered outside Dragnet, with its hash, on an incident")
    .requiredOption("--incident <id>", "the incident")
    .requiredOption("--sha256 <hex>", "its SHA-256")
    .requiredOption("--path <what>", "its path or a description")
    .option("--host <name>", "where it came from", "")
    .option("--size <n>", "its size in bytes", nonNegativeInt("--size"), 0)
    .option("--note <text>", "how it was obtained", "")
    .action(
      handle(
        async (
          flags: { incident: string; sha256: string; path: string; host: string; size: number; note: string },
          command: Command,
        ) => {
          return withApi(command, async (api) => {
            const item = await api.registerEvidence({
              incidentId: flags.incident,
              hostname: flags.host,
              path: flags.path,
              sha256: flags.sha256.toLowerCase(),
              size: flags.size,
              note: flags.note,
            });
            outcome(command, { id: item.id, sha256: item.sha256, incident: item.incidentId }, item.id);
            return EXIT_FOUND;
          });
        },
      ),
    );
}

/** Streams an item into `out` (never overwriting), checks size and SHA-256 against its record, then keeps it. */
async function download(api: CoordinatorApi, id: string, out: string) {
  if (existsSync(out))
    throw new DragnetError(Codes.PARAMS, `${out} exists: evidence is never written over a file`);
  const tmp = `${out}.part`;
  // A partial download left by one that was cut off (the console killed): started again.
  rmSync(tmp, { force: true });
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
  }
  const sha256 = hash.digest("hex");
  if (!item || sha256 !== item.sha256 || size !== item.size) {
    rmSync(tmp, { force: true });
    throw new DragnetError(
      Codes.MODULE_FAILED,
      `evidence ${id}: received ${size} bytes hashing to ${sha256}, the record says ${item?.size} bytes, ${item?.sha256}: not kept`,
    );
  }
  renameSync(tmp, out);
  return { item, size, sha256 };
}

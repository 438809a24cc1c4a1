import { createHash, sign, verify } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { Codes, DragnetError, keyIdOf, publicKeyFromRaw, sha256OfFile } from "../../common/mod.js";
import { EvidenceItem } from "../../proto/api.js";
import { globalsOf, handle, nonNegativeInt, outcome, withApi } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import { loadKey } from "../home.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

/** What a custody record's signature covers, before the record's JSON text (a signature made for nothing else). */
const CUSTODY_CONTEXT = "dragnet-custody-v1\n";

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
          const signature = sign(null, Buffer.from(`${CUSTODY_CONTEXT}${text}`), key.privateKey).toString(
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
    .command("verify-custody <record>")
    .description(
      "check an exported ID.custody.json and its file offline, with nothing but the exporter's public key (exit 0 intact, 1 not)",
    )
    .requiredOption("--pub <file>", "the exporter's public key (NAME.pub, from dragnet key generate)")
    .option("--file <file>", "the exported file (default: ID.evidence beside the record)")
    .action(
      handle(async (record: string, flags: { pub: string; file?: string }, command: Command) => {
        const verdict = await verifyCustodyRecord(record, flags.pub, flags.file);
        outcome(
          command,
          verdict,
          verdict.intact
            ? `intact: ${verdict.file} is evidence ${verdict.evidence} (${verdict.size} bytes, sha256 ${verdict.sha256}) as ${verdict.exportedBy} exported it at ${verdict.exportedAt}; signature by key ${verdict.keyId} verified`
            : `NOT INTACT: ${verdict.problem}`,
        );
        return verdict.intact ? EXIT_FOUND : EXIT_NOTHING;
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
export async function download(api: CoordinatorApi, id: string, out: string) {
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

/**
 * An export's custody record checked with nothing but the exporter's public key:
 * its signature over the record, then the file against the record's size and
 * SHA-256. For an outside firm or a court: no coordinator, no Dragnet keyring.
 */
export async function verifyCustodyRecord(recordPath: string, pubPath: string, filePath?: string) {
  const refuse = (problem: string) => ({ intact: false as const, problem });
  let outer: { record?: unknown; keyId?: unknown; signature?: unknown };
  let pub: { keyId?: unknown; publicKey?: unknown; name?: unknown };
  try {
    outer = JSON.parse(readFileSync(recordPath, "utf8"));
    pub = JSON.parse(readFileSync(pubPath, "utf8"));
  } catch (err) {
    throw new DragnetError(
      Codes.PARAMS,
      `cannot read the record or the public key: ${(err as Error).message}`,
    );
  }
  if (
    typeof outer.record !== "string" ||
    typeof outer.signature !== "string" ||
    typeof outer.keyId !== "string"
  )
    return refuse(`${recordPath} is not a custody record ({record, keyId, signature})`);
  if (typeof pub.publicKey !== "string") return refuse(`${pubPath} holds no publicKey`);
  const raw = Buffer.from(pub.publicKey, "base64");
  const keyId = keyIdOf(raw);
  if (outer.keyId !== keyId)
    return refuse(`the record was signed by key ${outer.keyId}, and ${pubPath} is key ${keyId}`);
  const signed = Buffer.from(`${CUSTODY_CONTEXT}${outer.record}`);
  if (!verify(null, signed, publicKeyFromRaw(raw), Buffer.from(outer.signature, "base64")))
    return refuse(
      "the signature does not match the record: it was changed after it was signed, or not signed by this key",
    );
  const record = JSON.parse(outer.record) as {
    evidence?: { id?: string; size?: string | number };
    sha256?: string;
    exportedBy?: string;
    exportedAt?: string;
  };
  const evidenceId = String(record.evidence?.id ?? "");
  const file = filePath ?? join(dirname(recordPath), `${evidenceId}.evidence`);
  if (!existsSync(file)) return refuse(`${file} does not exist (give the exported file with --file)`);
  const { sha256, size } = await sha256OfFile(file);
  if (sha256 !== record.sha256 || size !== Number(record.evidence?.size))
    return refuse(
      `${file} is ${size} bytes hashing to ${sha256}; the record says ${record.evidence?.size} bytes, ${record.sha256}`,
    );
  return {
    intact: true as const,
    file,
    evidence: evidenceId,
    size,
    sha256,
    exportedBy: String(record.exportedBy ?? ""),
    exportedAt: String(record.exportedAt ?? ""),
    keyId,
  };
}

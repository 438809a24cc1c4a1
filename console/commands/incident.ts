import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { sha256Hex, signNote } from "../../common/journal.js";
import { Codes, DragnetError, type InvestigatorKey } from "../../common/mod.js";
import { pageSummary } from "../../common/notebook-pages.js";
import type { JournalPage } from "../../proto/api.js";
import { globalsOf, handle, nonNegativeInt, outcome, withApi } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import { homeDir, loadKey, setDefaultIncident } from "../home.js";
import { formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet incident`: the team's notebook. Incidents with a phase, and a
// journal of numbered pages the coordinator chains and seals; notes are
// signed by their author's own key here, before they leave the console.

const INCIDENT_COLUMNS = [
  { key: "id", header: "id" },
  { key: "title", header: "title" },
  { key: "severity", header: "severity" },
  { key: "phase", header: "phase" },
  { key: "opened", header: "opened" },
  { key: "openedBy", header: "by" },
  { key: "pages", header: "pages" },
];

/** A note's text: the argument, a file, or standard input ("-"). */
function noteText(text: string | undefined, file: string | undefined): string {
  if (file) return readFileSync(file === "-" ? 0 : file, "utf8");
  if (text === "-") return readFileSync(0, "utf8");
  if (text) return text;
  throw new DragnetError(
    Codes.PARAMS,
    'give the note as an argument, --file FILE, or "-" for standard input',
  );
}

/** Adds a note to an incident's notebook, signed with the investigator's key; the incident by id or unique prefix. */
export async function addSignedNote(
  api: CoordinatorApi,
  key: InvestigatorKey,
  id: string,
  text: string,
  corrects = 0,
): Promise<{ full: string; page: JournalPage }> {
  const full = (await api.getIncident(id)).incident!.id;
  const atMs = Date.now();
  // The content exactly as the coordinator will store and hash it.
  const content = JSON.stringify(corrects ? { text, corrects } : { text });
  const signature = signNote(key.privateKey, full, atMs, "note", sha256Hex(content));
  return { full, page: await api.addNote(full, text, atMs, signature, corrects) };
}

export function registerIncidentCommand(program: Command): void {
  const incident = program.command("incident").description("incidents and their tamper-evident notebook");

  incident
    .command("open")
    .description("open an incident; prints its id")
    .requiredOption("--title <text>", "what happened, in a line")
    .option("--severity <s>", "low, medium, high or critical", "medium")
    .action(
      handle(async (flags: { title: string; severity: string }, command: Command) => {
        return withApi(command, async (api) => {
          const i = await api.openIncident(flags.title, flags.severity);
          outcome(command, { id: i.id, title: i.title, severity: i.severity, phase: i.phase }, i.id);
          process.stderr.write(
            `incident ${i.id} opened (phase ${i.phase}); make it the default with: dragnet incident use ${i.id}\n`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  incident
    .command("list")
    .description("incidents, newest first")
    .option("--limit <n>", "how many", nonNegativeInt("--limit"), 50)
    .action(
      handle(async (flags: { limit: number }, command: Command) => {
        const globals = globalsOf(command);
        return withApi(command, async (api) => {
          const list = await api.listIncidents(flags.limit);
          const writer = new RowWriter(formatOf(globals), INCIDENT_COLUMNS, { withAgent: false });
          for (const i of list) writer.add({ ...i, opened: isoTime(i.openedAtMs) });
          writer.end();
          return list.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        });
      }),
    );

  incident
    .command("show <id>")
    .description("an incident and every page of its notebook")
    .action(
      handle(async (id: string, _flags: unknown, command: Command) => {
        const globals = globalsOf(command);
        return withApi(command, async (api) => {
          const detail = await api.getIncident(id);
          const i = detail.incident!;
          if (formatOf(globals) === "table") {
            process.stdout.write(
              `${i.id}  ${printable(i.title)}\nseverity ${i.severity}, phase ${i.phase}, opened ${isoTime(i.openedAtMs)} by ${i.openedBy}\n\n`,
            );
          }
          const writer = new RowWriter(
            formatOf(globals),
            [
              { key: "seq", header: "page" },
              { key: "at", header: "time" },
              { key: "author", header: "author" },
              { key: "kind", header: "kind" },
              // For people a line per page, as the report words it; --json keeps the content whole.
              { key: "what", header: "what" },
            ],
            { withAgent: false },
          );
          for (const p of detail.pages) {
            const what = pageSummary(p);
            writer.add({
              ...p,
              at: isoTime(p.atMs),
              what: what.length > 160 ? `${what.slice(0, 159)}…` : what,
            });
          }
          writer.end();
          return EXIT_FOUND;
        });
      }),
    );

  incident
    .command("use [id]")
    .description("make actions belong to this incident by default (no id: stop)")
    .action(
      handle(async (id: string | undefined, _flags: unknown, command: Command) => {
        const globals = globalsOf(command);
        if (!id) {
          setDefaultIncident(homeDir(globals), undefined);
          outcome(command, { defaultIncident: null }, "no default incident");
          return EXIT_FOUND;
        }
        return withApi(command, async (api) => {
          const full = (await api.getIncident(id)).incident!;
          setDefaultIncident(homeDir(globals), full.id);
          outcome(
            command,
            { defaultIncident: full.id, title: full.title },
            `actions now belong to incident ${full.id} (${printable(full.title)}) unless --incident says otherwise`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  incident
    .command("phase <id> <phase>")
    .description(
      "move an incident to a phase: preparation, identification, notification, containment, eradication, recovery, 'post-incident review', 'lessons learned'",
    )
    .option("--note <text>", "why", "")
    .action(
      handle(async (id: string, phase: string, flags: { note: string }, command: Command) => {
        return withApi(command, async (api) => {
          const page = await api.changePhase(id, phase, flags.note);
          outcome(command, { page: page.seq, phase }, `page ${page.seq}: phase ${phase}`);
          return EXIT_FOUND;
        });
      }),
    );

  incident
    .command("note <id> [text]")
    .description('add a page, signed with your key (text, --file FILE, or "-" for standard input)')
    .option("--file <file>", "the note's text from a file (- for standard input)")
    .option(
      "--corrects <page>",
      "this note corrects that page (pages are never edited)",
      nonNegativeInt("--corrects"),
      0,
    )
    .action(
      handle(
        async (
          id: string,
          text: string | undefined,
          flags: { file?: string; corrects: number },
          command: Command,
        ) => {
          const globals = globalsOf(command);
          const body = noteText(text, flags.file);
          const key = loadKey(globals);
          return withApi(command, async (api) => {
            const { full, page } = await addSignedNote(api, key, id, body, flags.corrects);
            outcome(
              command,
              { page: page.seq, incident: full, signedBy: key.name },
              `page ${page.seq} of incident ${full}, signed by ${key.name}`,
            );
            return EXIT_FOUND;
          });
        },
      ),
    );

  incident
    .command("notify <id>")
    .description(
      "record who was told what and when (and call the role's webhook, if the coordinator has one)",
    )
    .requiredOption("--to <role>", "internal CSIRT, legal counsel, management, law enforcement, users …")
    .option("--message <text>", "what they were told", "")
    .action(
      handle(async (id: string, flags: { to: string; message: string }, command: Command) => {
        return withApi(command, async (api) => {
          const r = await api.notify(id, flags.to, flags.message);
          outcome(
            command,
            { page: r.page!.seq, notified: flags.to, webhook: r.webhook || null },
            `page ${r.page!.seq}: notified ${flags.to}${r.webhook ? ` (webhook: ${r.webhook})` : ""}`,
          );
          return EXIT_FOUND;
        });
      }),
    );

  incident
    .command("verify <id>")
    .description(
      "recompute the notebook's chain and signatures; names the first broken page (exit 0 when intact, 1 when not)",
    )
    .action(
      handle(async (id: string, _flags: unknown, command: Command) => {
        return withApi(command, async (api) => {
          const r = await api.verifyIncident(id);
          if (r.ok) {
            outcome(
              command,
              { intact: true, pages: r.pages },
              `intact: ${r.pages} pages, chain and signatures verified`,
            );
            return EXIT_FOUND;
          }
          outcome(
            command,
            { intact: false, pages: r.pages, brokenPage: r.brokenPage, problem: r.problem },
            `BROKEN at page ${r.brokenPage}: ${r.problem}`,
          );
          return EXIT_NOTHING;
        });
      }),
    );

  incident
    .command("report <id>")
    .description("the post-incident report: timeline, actions, evidence, isolation, phases, review questions")
    .option("--format <f>", "md or html (one self-contained file)", "md")
    .option("--out <file>", "write it here instead of standard output")
    .action(
      handle(async (id: string, flags: { format: string; out?: string }, command: Command) => {
        return withApi(command, async (api) => {
          const report = await api.incidentReport(id, flags.format);
          if (flags.out) writeFileSync(flags.out, report);
          else process.stdout.write(report);
          return EXIT_FOUND;
        });
      }),
    );
}

import { type Command, Option } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import { splitTag, tagProblem } from "../../common/tags.js";
import type { EnrollmentToken } from "../../proto/api.js";
import { duration, globalsOf, handle, outcome, uint32, withApi } from "../cli-kit.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet enroll token create|list|revoke`: the tokens new agents join the
// fleet with (`dragnet-agent enroll --token T`). A token carries its tags, how
// many agents may use it and when it expires; its secret is shown once.

function tagsOf(values: string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const t of values.flatMap((v) => v.split(",")).filter(Boolean)) {
    const tag = splitTag(t);
    if (!tag || tagProblem(...tag)) {
      throw new DragnetError(Codes.PARAMS, `--tags takes key=value[,key=value], not "${t}"`);
    }
    tags[tag[0]] = tag[1];
  }
  return tags;
}

function tokenRow(t: EnrollmentToken, now: number) {
  const state = t.revokedAtMs
    ? "revoked"
    : t.used >= t.uses
      ? "used up"
      : t.expiresAtMs <= now
        ? "expired"
        : "valid";
  return {
    id: t.id,
    tags: Object.entries(t.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(" "),
    used: `${t.used}/${t.uses}`,
    expires: isoTime(t.expiresAtMs),
    created: isoTime(t.createdAtMs),
    by: t.createdBy,
    state,
  };
}

const TOKEN_COLUMNS = ["id", "state", "used", "tags", "expires", "created", "by"].map((key) => ({
  key,
  header: key,
}));

export function registerEnrollCommand(program: Command): void {
  const token = program
    .command("enroll")
    .description("enrolment of new agents")
    .command("token")
    .description("enrolment tokens: what `dragnet-agent enroll --token` takes");
  token
    .command("create")
    .description("make a token (its text is shown once; give it to the hosts that should join)")
    .option(
      "--tags <key=value,...>",
      "tags the agents enrolled with it report (repeatable)",
      (v, p: string[] = []) => [...p, v],
    )
    .option("--uses <n>", "how many agents may enrol with it", uint32("--uses"), 1)
    .addOption(
      new Option("--expires <duration>", "how long it stays valid")
        .argParser(duration("--expires"))
        .default(24 * 3_600_000, "24h"),
    )
    .action(
      handle(async (flags: { tags?: string[]; uses: number; expires: number }, command: Command) =>
        withApi(command, async (api) => {
          const r = await api.createEnrollmentToken(tagsOf(flags.tags ?? []), flags.uses, flags.expires);
          const t = r.token!;
          outcome(
            command,
            { token: r.secret, id: t.id, uses: t.uses, expires: isoTime(t.expiresAtMs), tags: t.tags },
            `${r.secret}\n` +
              `token ${t.id}: ${t.uses} use${t.uses === 1 ? "" : "s"}, expires ${isoTime(t.expiresAtMs)}, tags ${tokenRow(t, Date.now()).tags || "(none)"}\n` +
              "on each host: dragnet-agent enroll --coordinator-nats URL --token TOKEN",
          );
          return EXIT_FOUND;
        }),
      ),
    );
  token
    .command("list")
    .description("tokens, newest first, with their state")
    .option("--limit <n>", "how many", uint32("--limit"), 100)
    .action(
      handle(async (flags: { limit: number }, command: Command) =>
        withApi(command, async (api) => {
          const tokens = await api.listEnrollmentTokens(flags.limit);
          const writer = new RowWriter(formatOf(globalsOf(command)), TOKEN_COLUMNS, { withAgent: false });
          const now = Date.now();
          for (const t of tokens) writer.add(tokenRow(t, now));
          writer.end();
          return tokens.length ? EXIT_FOUND : EXIT_NOTHING;
        }),
      ),
    );
  token
    .command("revoke <id>")
    .description("refuse the token from now on (agents enrolled with it keep their credentials)")
    .action(
      handle(async (id: string, _flags: unknown, command: Command) =>
        withApi(command, async (api) => {
          const t = await api.revokeEnrollmentToken(id);
          outcome(
            command,
            { id: t.id, revoked: true, used: t.used, uses: t.uses },
            `token ${t.id} revoked (${t.used} of ${t.uses} uses were made)`,
          );
          return EXIT_FOUND;
        }),
      ),
    );
}

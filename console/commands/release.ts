import { createReadStream, readFileSync } from "node:fs";
import type { Command } from "commander";
import { sha256OfFile } from "../../common/files.js";
import { Codes, DragnetError, loadInvestigatorKey } from "../../common/mod.js";
import { currentPlatform, isVersion, signRelease } from "../../common/release.js";
import { addActionFlags, duration, globalsOf, handle, type SweepFlags, withApi } from "../cli-kit.js";
import { registerFormatter } from "../output/formatters.js";
import { formatOf, RowWriter } from "../output/rows.js";
import { sendAction } from "../send.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// Agent releases: `dragnet release publish` signs an executable's manifest
// with a release key and stores both in the releases object store;
// `dragnet agents upgrade` is the signed action (two people by default) that
// makes agents fetch, verify and run it. `dragnet release keys` prints the
// file agents trust release keys from (it goes with their install config).

registerFormatter("upgrade", {
  columns: [
    { key: "state", header: "state" },
    { key: "fromVersion", header: "from" },
    { key: "toVersion", header: "to" },
    { key: "sha256", header: "sha256" },
    { key: "signer", header: "signed by" },
  ],
  rows: (r) => [{ ...(r as object) }],
});

export function registerReleaseCommand(program: Command, agents: Command): void {
  const release = program
    .command("release")
    .description("signed agent releases, for `dragnet agents upgrade`");
  release
    .command("publish <file>")
    .description("sign an agent executable's manifest with a release key and store it for agents to fetch")
    .requiredOption("--version <version>", "its version (semver, what agents will report)")
    .requiredOption("--release-key <file>", "the release key (made with `dragnet key generate`)")
    .option("--platform <os-arch>", "what it runs on", currentPlatform())
    .action(
      handle(
        async (file: string, flags: { version: string; releaseKey: string; platform: string }, command) => {
          if (!isVersion(flags.version)) {
            throw new DragnetError(
              Codes.PARAMS,
              `--version takes a semantic version (1.2.3), not "${flags.version}"`,
            );
          }
          const key = loadInvestigatorKey(flags.releaseKey, process.env.DRAGNET_KEY_PASSPHRASE || undefined);
          const { size, sha256 } = await sha256OfFile(file);
          const signed = signRelease(
            { version: flags.version, platform: flags.platform, size, sha256, publishedAtMs: Date.now() },
            key,
          );
          return withApi(command, async (api) => {
            const r = await api.publishRelease(
              {
                ...signed,
                signature: Buffer.from(signed.signature),
                version: flags.version,
                platform: flags.platform,
                size,
                sha256,
              },
              createReadStream(file, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>,
            );
            process.stdout.write(
              `published agent ${r.version} for ${r.platform}: ${r.size} bytes, sha256 ${r.sha256}, signed by ${key.name} (key ${r.keyId})\n`,
            );
            return EXIT_FOUND;
          });
        },
      ),
    );
  release
    .command("list")
    .description("releases in the store")
    .action(
      handle(async (_flags: unknown, command: Command) =>
        withApi(command, async (api) => {
          const releases = await api.listReleases();
          const writer = new RowWriter(
            formatOf(globalsOf(command)),
            ["version", "platform", "size", "sha256", "keyId"].map((key) => ({ key, header: key })),
            { withAgent: false },
          );
          for (const r of releases) writer.add({ ...r, signature: undefined });
          writer.end();
          return releases.length ? EXIT_FOUND : EXIT_NOTHING;
        }),
      ),
    );
  release
    .command("keys <pub...>")
    .description("print the release-keys file agents trust releases from, from release keys' .pub files")
    .action(
      handle(async (pubs: string[]) => {
        const releaseKeys = pubs.map((p) => {
          const { name, keyId, publicKey } = JSON.parse(readFileSync(p, "utf8")) as Record<string, string>;
          return { name, keyId, publicKey };
        });
        process.stdout.write(`${JSON.stringify({ releaseKeys }, null, 2)}\n`);
        return EXIT_FOUND;
      }),
    );

  const upgrade = agents
    .command("upgrade")
    .description(
      "run a published release on the targeted agents: each fetches it, checks size, SHA-256 and signature, replaces itself, restarts, and rolls back unless healthy in time",
    )
    .requiredOption("--version <version>", "the release to run")
    .option(
      "--health-timeout <duration>",
      "how long the new version has to come back",
      duration("--health-timeout"),
      60_000,
    );
  // `agents` has a -t of its own, which commander gives the parent wherever it stands: read it there too.
  addActionFlags(upgrade, { targetRequired: false });
  upgrade.action(
    handle(async (flags: SweepFlags & { version: string; healthTimeout: number }, command: Command) => {
      const target = flags.target ?? (command.parent?.opts() as { target?: string } | undefined)?.target;
      if (!target) throw new DragnetError(Codes.PARAMS, "agents upgrade needs -t EXPR (which agents)");
      return sendAction(command, { ...flags, target }, `upgrade to ${flags.version}`, [
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

import { execFileSync } from "node:child_process";
import { createReadStream, readFileSync } from "node:fs";
import type { Command } from "commander";
import { sha256OfFile } from "../../common/files.js";
import { Codes, DragnetError, loadInvestigatorKey } from "../../common/mod.js";
import { currentPlatform, isVersion, signRelease } from "../../common/release.js";
import { globalsOf, handle, outcome, withApi } from "../cli-kit.js";
import { formatOf, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// Agent releases: `dragnet release publish` signs an executable's manifest
// with a release key and stores both in the releases object store, for
// `dragnet agents upgrade` (console/modules/upgrade.ts) to run. `dragnet
// release keys` prints the file agents trust release keys from (it goes with
// their install config).

/**
 * An agent reports the version it was built with; one published under another
 * version never comes back healthy after an upgrade (the upgrade waits for that
 * version in its heartbeat) and is rolled back. Refused here instead.
 */
function checkReportedVersion(file: string, version: string): void {
  let reported: string;
  try {
    reported = execFileSync(file, ["--version"], { encoding: "utf8", env: {}, timeout: 15_000 }).trim();
  } catch (err) {
    throw new DragnetError(
      Codes.PARAMS,
      `cannot run ${file} --version (${(err as Error).message.split("\n")[0]}): is it a Dragnet agent built for this platform? (--no-version-check publishes it unchecked)`,
    );
  }
  if (reported !== version) {
    throw new DragnetError(
      Codes.PARAMS,
      `${file} reports version ${reported.slice(0, 40)}, not ${version}: agents would run it, report ${reported.slice(0, 40)} and roll the upgrade back. Build it as ${version}: DRAGNET_AGENT_VERSION=${version} DRAGNET_AGENT_OUT=FILE npm run build`,
    );
  }
}

export function registerReleaseCommand(program: Command): void {
  const release = program
    .command("release")
    .description("signed agent releases, for `dragnet agents upgrade`");
  release
    .command("publish <file>")
    .description("sign an agent executable's manifest with a release key and store it for agents to fetch")
    .requiredOption("--version <version>", "its version (semver, what agents will report)")
    .requiredOption("--release-key <file>", "the release key (made with `dragnet key generate`)")
    .option("--platform <os-arch>", "what it runs on", currentPlatform())
    .option(
      "--no-version-check",
      "publish without running FILE --version (a build for another platform is never run)",
    )
    .action(
      handle(
        async (
          file: string,
          flags: { version: string; releaseKey: string; platform: string; versionCheck: boolean },
          command,
        ) => {
          if (!isVersion(flags.version)) {
            throw new DragnetError(
              Codes.PARAMS,
              `--version takes a semantic version (1.2.3), not "${flags.version}"`,
            );
          }
          if (flags.versionCheck && flags.platform === currentPlatform())
            checkReportedVersion(file, flags.version);
          else if (flags.versionCheck) {
            process.stderr.write(
              `${file} is built for ${flags.platform}: its version is not checked here (agents roll it back if it does not report ${flags.version})\n`,
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
            outcome(
              command,
              { version: r.version, platform: r.platform, size: r.size, sha256: r.sha256, keyId: r.keyId },
              `published agent ${r.version} for ${r.platform}: ${r.size} bytes, sha256 ${r.sha256}, signed by ${key.name} (key ${r.keyId})`,
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
}

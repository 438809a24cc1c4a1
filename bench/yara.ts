// npm run bench:yara [-- --runs 3]
//
// The yara module in this process (YARA-X, two files at a time) against
// Debian's `yara -r -N -p 2` (4.2), with the same rules (bench/yara-rules.yar,
// tens of rules: strings, hex with jumps, regexes) on bench:file's tree
// (bench/file-tree.ts). Warm cache; medians of --runs. Both find the same
// (file, rule) pairs or the bench says where they differ. One JSON line at the end.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { yaraModule } from "../agent/modules/yara/index.js";
import { silentLogger } from "../common/mod.js";
import type { YaraParams } from "../proto/api.js";
import { ROOT } from "../test/helpers/cli.js";
import { buildTree, TREE } from "./file-tree.js";
import { medianMs } from "./timing.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Number(values.runs);
const rulesFile = join(ROOT, "bench", "yara-rules.yar");
const stateDir = mkdtempSync(join(tmpdir(), "dragnet-bench-yara-"));
const tree = buildTree();

const params: YaraParams = {
  rules: [{ name: "yara-rules.yar", text: readFileSync(rulesFile, "utf8") }],
  paths: [TREE],
  name: "",
  // Like for like: yara has no size cap and no match cap.
  maxFileBytes: 1024 ** 4,
  maxMatches: 100_000,
  maxStrings: 1,
  processes: undefined,
};
yaraModule.check(params);
const ours = async () =>
  (await yaraModule.run(params, { signal: new AbortController().signal, log: silentLogger, stateDir }))
    .result;
const theirs = () => {
  const r = spawnSync("yara", ["-r", "-N", "-p", "2", rulesFile, TREE], {
    maxBuffer: 1 << 28,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`yara: ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean);
};

const pairs = new Set((await ours()).matches.map((m) => `${m.rule} ${m.path}`));
const yaraPairs = new Set(theirs());
const onlyOurs = [...pairs].filter((p) => !yaraPairs.has(p));
const onlyTheirs = [...yaraPairs].filter((p) => !pairs.has(p));
if (onlyOurs.length || onlyTheirs.length)
  process.stderr.write(
    `bench: differ: dragnet only ${JSON.stringify(onlyOurs.slice(0, 5))}, yara only ${JSON.stringify(onlyTheirs.slice(0, 5))}\n`,
  );
const dragnetMs = await medianMs(runs, ours);
const yaraMs = await medianMs(runs, theirs);
console.log(
  JSON.stringify({
    bench: "yara",
    files: tree.files,
    bytes: tree.bytes,
    rules: (params.rules[0]!.text.match(/^rule /gm) ?? []).length,
    pairs: pairs.size,
    yara_pairs: yaraPairs.size,
    dragnet_ms: Math.round(dragnetMs),
    yara_ms: Math.round(yaraMs),
    ratio: Number((dragnetMs / yaraMs).toFixed(2)),
  }),
);

import { createTwoFilesPatch } from "diff";
import type { DriftChange, DriftEntry } from "../../../proto/mod.js";
import type { SnapshotEntry } from "./snapshot.js";

// Baseline against present: what was added, removed or changed, what about it
// changed, and a unified diff for text files whose content was kept.

/** A diff longer than this is cut (and says so): results travel in one message. */
const MAX_DIFF = 16 * 1024;
/** All diffs of one comparison together: past this, further diffs are left out (and say so). */
const MAX_DIFFS_TOTAL = 512 * 1024;

function plain(e: SnapshotEntry): DriftEntry {
  const { content64: _content, ctimeMs: _ctime, ...rest } = e;
  return rest;
}

const text = (b64: string) => Buffer.from(b64, "base64").toString("utf8");

/** A unified diff between two kept texts (undefined: the file did not exist then), cut at MAX_DIFF. */
function unifiedDiff(
  path: string,
  before: string | undefined,
  after: string | undefined,
  label: string,
): string {
  const diff = createTwoFilesPatch(
    before === undefined ? "/dev/null" : path,
    after === undefined ? "/dev/null" : path,
    before ?? "",
    after ?? "",
    label,
    "now",
    { context: 3 },
  );
  return diff.length > MAX_DIFF ? `${diff.slice(0, MAX_DIFF)}\n[diff cut at ${MAX_DIFF} bytes]\n` : diff;
}

/**
 * `label` names the earlier state in diffs: "baseline" for a check, "before"
 * for a watch's alert. Added and removed text files carry their whole text as
 * a diff from or to nothing: what a new cron job runs matters as much as that
 * it appeared.
 */
export function compare(
  before: Map<string, SnapshotEntry>,
  after: Map<string, SnapshotEntry>,
  label = "baseline",
): DriftChange[] {
  const changes: DriftChange[] = [];
  let budget = MAX_DIFFS_TOTAL;
  /** The diff if the budget still allows it. */
  const spend = (diff: string): string => {
    if (diff.length > budget) return `[diff left out: this answer's diffs passed ${MAX_DIFFS_TOTAL} bytes]\n`;
    budget -= diff.length;
    return diff;
  };
  const paths = [...new Set([...before.keys(), ...after.keys()])].sort();
  for (const path of paths) {
    const b = before.get(path);
    const a = after.get(path);
    if (!b) {
      const diff =
        a!.content64 !== undefined ? spend(unifiedDiff(path, undefined, text(a!.content64), label)) : "";
      changes.push({
        path,
        kind: "added",
        what: [],
        before: undefined,
        after: plain(a!),
        diff,
        origin: "",
        package: "",
      });
      continue;
    }
    if (!a) {
      const diff =
        b.content64 !== undefined ? spend(unifiedDiff(path, text(b.content64), undefined, label)) : "";
      changes.push({
        path,
        kind: "removed",
        what: [],
        before: plain(b),
        after: undefined,
        diff,
        origin: "",
        package: "",
      });
      continue;
    }
    const what: string[] = [];
    if (a.type !== b.type) what.push("type");
    else {
      if (a.type === "file" && a.sha256 !== b.sha256) what.push("content");
      if (a.type === "symlink" && a.target !== b.target) what.push("target");
    }
    // A type change carries its own mode: only same-type entries report mode.
    if (a.type === b.type && a.mode.slice(1) !== b.mode.slice(1)) what.push("mode");
    if (a.uid !== b.uid || a.gid !== b.gid) what.push("owner");
    if (what.length === 0) continue;
    const diff =
      what.includes("content") && b.content64 !== undefined && a.content64 !== undefined
        ? spend(unifiedDiff(path, text(b.content64), text(a.content64), label))
        : "";
    changes.push({
      path,
      kind: "changed",
      what,
      before: plain(b),
      after: plain(a),
      diff,
      origin: "",
      package: "",
    });
  }
  return changes;
}

import { createTwoFilesPatch } from "diff";
import type { DriftChange, DriftEntry } from "../../../proto/mod.js";
import type { SnapshotEntry } from "./snapshot.js";

// Baseline against present: what was added, removed or changed, what about it
// changed, and a unified diff for text files whose content both sides kept.

/** A diff longer than this is cut (and says so): results travel in one message. */
const MAX_DIFF = 16 * 1024;

function plain(e: SnapshotEntry): DriftEntry {
  const { content64: _content, ctimeMs: _ctime, ...rest } = e;
  return rest;
}

/** `label` names the earlier state in diffs: "baseline" for a check, "before" for a watch's alert. */
export function compare(
  before: Map<string, SnapshotEntry>,
  after: Map<string, SnapshotEntry>,
  label = "baseline",
): DriftChange[] {
  const changes: DriftChange[] = [];
  const paths = [...new Set([...before.keys(), ...after.keys()])].sort();
  for (const path of paths) {
    const b = before.get(path);
    const a = after.get(path);
    if (!b) {
      changes.push({ path, kind: "added", what: [], before: undefined, after: plain(a!), diff: "" });
      continue;
    }
    if (!a) {
      changes.push({ path, kind: "removed", what: [], before: plain(b), after: undefined, diff: "" });
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
    let diff = "";
    if (what.includes("content") && b.content64 !== undefined && a.content64 !== undefined) {
      const text = (b64: string) => Buffer.from(b64, "base64").toString("utf8");
      diff = createTwoFilesPatch(path, path, text(b.content64), text(a.content64), label, "now", {
        context: 3,
      });
      if (diff.length > MAX_DIFF) diff = `${diff.slice(0, MAX_DIFF)}\n[diff cut at ${MAX_DIFF} bytes]\n`;
    }
    changes.push({ path, kind: "changed", what, before: plain(b), after: plain(a), diff });
  }
  return changes;
}

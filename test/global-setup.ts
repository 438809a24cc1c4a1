import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Every directory a test makes (tempDir, nats-server's) goes under one per
// run, removed when the run ends: a run leaves nothing behind in /tmp.
export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), "dragnet-run-"));
  process.env.DRAGNET_TEST_TMP = root;
  return () => {
    try {
      rmSync(root, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      // A file system a failed test left mounted: say so, do not fail the run for it.
      process.stderr.write(`test directories not all removed (${root}): ${(err as Error).message}\n`);
    }
  };
}

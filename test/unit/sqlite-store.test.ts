import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { SqliteStore } from "../../coordinator/mod.js";
import { CommandStatus } from "../../proto/mod.js";
import { tempDir } from "../helpers/fleet.js";

describe("SQLite store", () => {
  it("creates its schema, reopens it, and refuses a database from a newer coordinator", () => {
    const file = join(tempDir(), "c.db");
    const store = new SqliteStore(file);
    store.apply({
      agents: [],
      actions: [
        {
          id: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          name: "n",
          target: "all",
          signed: Buffer.from([1, 2, 3]),
          signerKeyIds: ["k"],
          signerNames: ["alice"],
          modules: ["file"],
          incidentId: "",
          createdAtMs: 1,
          validFromMs: 1,
          expiresAtMs: 2,
          submittedAtMs: 1,
          timeoutMs: 1000,
        },
      ],
      commands: [
        {
          id: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          status: CommandStatus.COMMAND_STATUS_PENDING,
          problemCode: "",
          problemMessage: "",
          found: false,
          createdAtMs: 1,
          sentAtMs: 0,
          ackedAtMs: 0,
          updatedAtMs: 1,
        },
      ],
      results: [
        {
          commandId: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          found: true,
          payload: Buffer.from([9]),
          receivedAtMs: 5,
        },
        // The same result again (a redelivery) is stored once.
        {
          commandId: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          found: true,
          payload: Buffer.from([9]),
          receivedAtMs: 6,
        },
      ],
      completed: [],
    });
    store.close();
    const again = new SqliteStore(file);
    expect(again.getAction("01m8aaaaaaaaaaaaaaaaaaaaaa")?.signerNames).toEqual(["alice"]);
    expect(again.resultsOf("01m8aaaaaaaaaaaaaaaaaaaaaa").map((r) => r.receivedAtMs)).toEqual([5]);
    expect(again.actionIdsByPrefix("01m8a", 5)).toEqual(["01m8aaaaaaaaaaaaaaaaaaaaaa"]);
    expect(again.actionIdsByPrefix("01m8b", 5)).toEqual([]);
    expect(again.matchedAgents("01m8aaaaaaaaaaaaaaaaaaaaaa")).toEqual(["a1"]);
    again.close();
    const raw = new Database(file);
    raw.pragma("user_version = 99");
    raw.close();
    expect(() => new SqliteStore(file)).toThrow(/newer than this coordinator/);
  });
});

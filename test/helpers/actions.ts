import { newId } from "../../common/mod.js";
import type { CoordinatorApi } from "../../console/client.js";
import {
  type ActionBody,
  type ActionEvent,
  type AgentResult,
  FileSearch,
  type FileSearchOptions,
} from "../../proto/api.js";

/** A file search with only the fields a test cares about; the rest take their proto defaults. */
export type SearchInput = Omit<Partial<FileSearch>, "options"> & { options?: Partial<FileSearchOptions> };

export function fileSearch(search: SearchInput): FileSearch {
  return FileSearch.fromPartial({ label: "s1", paths: ["/etc"], ...search } as FileSearch);
}

/** An ActionBody for a file search, valid now for a minute unless told otherwise. */
export function fileAction(search: SearchInput, overrides: Partial<ActionBody> = {}): ActionBody {
  const now = Date.now();
  return {
    id: newId(now),
    schedule: undefined,
    name: "test file search",
    target: "all",
    operations: [
      {
        module: {
          $case: "file",
          value: {
            searches: [fileSearch(search)],
          },
        },
      },
    ],
    validFromMs: now - 1000,
    expiresAtMs: now + 60_000,
    timeoutMs: 20_000,
    incidentId: "",
    description: "",
    createdAtMs: now,
    ...overrides,
  };
}

/** Watches an action to the end; returns every final AgentResult and the last summary. */
export async function collectResults(api: CoordinatorApi, actionId: string) {
  const results: AgentResult[] = [];
  let done: Extract<ActionEvent["event"], { $case: "done" }>["value"] | undefined;
  await api.watchAction(actionId, (event) => {
    if (event.event?.$case === "result") results.push(event.event.value);
    if (event.event?.$case === "done") done = event.event.value;
    return true;
  });
  return { results, done };
}

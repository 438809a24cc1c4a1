import { describe, expect, it } from "vitest";
import { formatDuration } from "../../common/mod.js";

describe("durations for people", () => {
  it("rounds to the second before splitting minutes from seconds", () => {
    expect(formatDuration(299_600)).toBe("5m");
    expect(formatDuration(305_400)).toBe("5m5s");
    expect(formatDuration(3_599_700)).toBe("1h");
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(9_500)).toBe("9.5s");
    expect(formatDuration(250)).toBe("250ms");
  });
});

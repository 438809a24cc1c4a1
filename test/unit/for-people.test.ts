import { describe, expect, it } from "vitest";
import { formatDuration } from "../../common/mod.js";
import { nameWith } from "../../console/send.js";

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

describe("action names", () => {
  it("say what an action looks for, from the parameters given, within 100 characters", () => {
    expect(nameWith("process", { name: "^sshd$", user: "", pid: 0, listening: true, exe: [] })).toBe(
      "process name=^sshd$ listening",
    );
    expect(nameWith("netstat", { remoteIp: ["203.0.113.0/24", "198.51.100.7"], localPort: 4444 })).toBe(
      "netstat remoteIp=203.0.113.0/24,198.51.100.7 localPort=4444",
    );
    expect(nameWith("memory", { regex: "x".repeat(200) })).toHaveLength(100);
  });
});

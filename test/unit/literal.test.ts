import { describe, expect, it } from "vitest";
import { requiredLiteral } from "../../agent/modules/file/literal.js";

// The literal a content search skips chunks by must be in every match: a
// wrong one would make the file module miss files.

describe("requiredLiteral", () => {
  it("finds the longest run of plain characters outside classes, groups and quantified characters", () => {
    expect(requiredLiteral(/[Pp]ermission is hereby granted/)).toBe("ermission is hereby granted");
    expect(requiredLiteral(/curl[^|]*[|] *(ba)?sh/)).toBe("curl");
    expect(requiredLiteral(/^Version: 2\.15-0ubuntu10\.10$/)).toBe("Version: 2.15-0ubuntu10.10");
    expect(requiredLiteral(/colou?r scheme/)).toBe("r scheme");
    expect(requiredLiteral(/abcd+efg/)).toBe("abc");
    expect(requiredLiteral(/x(?:foo|bar)yyyy/)).toBe("yyyy");
  });

  it("gives none when a match need not contain one", () => {
    expect(requiredLiteral(/alpha|beta/)).toBeUndefined();
    expect(requiredLiteral(/(?:alpha)?/)).toBeUndefined();
    expect(requiredLiteral(/needle/i)).toBeUndefined();
    expect(requiredLiteral(/Grüße/)).toBeUndefined();
    expect(requiredLiteral(/ab\dcd/)).toBeUndefined();
    // Multi-character escapes and counted repetitions are not text.
    expect(requiredLiteral(/\x7fELF/)).toBeUndefined();
    expect(requiredLiteral(/\u0041BCD/)).toBeUndefined();
    expect(requiredLiteral(/(?<n>ab)\k<n>/)).toBeUndefined();
    expect(requiredLiteral(/[0-9]{100}/)).toBeUndefined();
    expect(requiredLiteral(/[A-Za-z0-9+/]{100,}/)).toBeUndefined();
    expect(requiredLiteral(/x{2}abcd/)).toBe("abcd");
    expect(requiredLiteral(/[abc]{3}/)).toBeUndefined();
  });

  it("every literal it gives occurs in strings the pattern matches", () => {
    const cases: Array<[RegExp, string]> = [
      [/[Pp]ermission is hereby granted/, "Permission is hereby granted, free"],
      [/colou?r scheme/, "the color scheme"],
      [/abcd+efg/, "xxabcdddefg"],
      [/a\.b\/cde/, "a.b/cde"],
    ];
    for (const [re, text] of cases) {
      expect(re.test(text)).toBe(true);
      expect(text).toContain(requiredLiteral(re)!);
    }
  });
});

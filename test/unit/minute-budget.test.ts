import { describe, expect, it } from "vitest";
import { MinuteBudget } from "../../coordinator/minute-budget.js";

describe("a budget per key and minute", () => {
  it("lets so many through per key, counts the rest and hands the count back when that key's next minute starts", () => {
    const budget = new MinuteBudget<string>(3);
    const leftOut: Array<[string, number, number]> = [];
    const take = (key: string, at: number) =>
      budget.take(key, at, (n, since) => leftOut.push([key, n, since]));
    const t = 1_000_000;
    expect([1, 2, 3, 4, 5].map((i) => take("a", t + i))).toEqual([true, true, true, false, false]);
    // Another key has its own budget.
    expect(take("b", t + 10)).toBe(true);
    expect(leftOut).toEqual([]);
    // A minute on: the count for "a" is reported once, and "a" may log again.
    expect(take("a", t + 60_001)).toBe(true);
    expect(leftOut).toEqual([["a", 2, t + 1]]);
    expect(take("a", t + 60_002)).toBe(true);
    expect(leftOut).toHaveLength(1);
  });

  it("keeps at most so many keys, forgetting the oldest", () => {
    const budget = new MinuteBudget<number>(1, 2);
    const none = () => undefined;
    expect(budget.take(1, 0, none)).toBe(true);
    expect(budget.take(1, 1, none)).toBe(false);
    budget.take(2, 2, none);
    budget.take(3, 3, none); // key 1 is forgotten
    expect(budget.take(1, 4, none)).toBe(true);
  });
});

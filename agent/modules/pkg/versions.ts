import type { VersionFilter } from "./check.js";

// Version ordering as each package manager defines it, so that "<3.0.11-1~deb12u1"
// means what dpkg (or rpm) means by it — a string or semver comparison would
// not: in Debian 1.0~rc1 < 1.0 < 1.0-1 < 1:0.9.

/** dpkg's order of one character in a non-digit run: "~" before everything, even the end; letters before other characters. */
function dpkgOrder(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

/** dpkg's verrevcmp: alternating non-digit and digit runs. */
function dpkgPart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let first = 0;
    while ((i < a.length && !/[0-9]/.test(a[i]!)) || (j < b.length && !/[0-9]/.test(b[j]!))) {
      const ac = dpkgOrder(a[i]);
      const bc = dpkgOrder(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === "0") i++;
    while (b[j] === "0") j++;
    while (i < a.length && /[0-9]/.test(a[i]!) && j < b.length && /[0-9]/.test(b[j]!)) {
      if (!first) first = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && /[0-9]/.test(a[i]!)) return 1;
    if (j < b.length && /[0-9]/.test(b[j]!)) return -1;
    if (first) return first;
  }
  return 0;
}

interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

function parseDeb(v: string): DebVersion {
  const colon = v.indexOf(":");
  const epoch = colon > 0 ? Number(v.slice(0, colon)) : 0;
  const rest = colon > 0 ? v.slice(colon + 1) : v;
  const dash = rest.lastIndexOf("-");
  return {
    epoch: Number.isFinite(epoch) ? epoch : 0,
    upstream: dash >= 0 ? rest.slice(0, dash) : rest,
    revision: dash >= 0 ? rest.slice(dash + 1) : "",
  };
}

/** Debian's version comparison (dpkg --compare-versions): negative, 0 or positive. */
export function compareDebian(a: string, b: string): number {
  const x = parseDeb(a);
  const y = parseDeb(b);
  if (x.epoch !== y.epoch) return x.epoch - y.epoch;
  return dpkgPart(x.upstream, y.upstream) || dpkgPart(x.revision, y.revision);
}

/** rpm's rpmvercmp on one of epoch, version or release. */
function rpmvercmp(a: string, b: string): number {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < a.length && !/[A-Za-z0-9~^]/.test(a[i]!)) i++;
    while (j < b.length && !/[A-Za-z0-9~^]/.test(b[j]!)) j++;
    // "~" sorts before everything, "^" after the end but before anything else.
    if (a[i] === "~" || b[j] === "~") {
      if (a[i] !== "~") return 1;
      if (b[j] !== "~") return -1;
      i++;
      j++;
      continue;
    }
    if (a[i] === "^" || b[j] === "^") {
      if (i >= a.length) return -1;
      if (j >= b.length) return 1;
      if (a[i] !== "^") return 1;
      if (b[j] !== "^") return -1;
      i++;
      j++;
      continue;
    }
    if (i >= a.length || j >= b.length) break;
    const numeric = /[0-9]/.test(a[i]!);
    const run = numeric ? /^[0-9]+/ : /^[A-Za-z]+/;
    const x = run.exec(a.slice(i))?.[0] ?? "";
    const y = run.exec(b.slice(j))?.[0] ?? "";
    // Segments of different kinds: the numeric one is newer.
    if (!y) return numeric ? 1 : -1;
    i += x.length;
    j += y.length;
    if (numeric) {
      const xs = x.replace(/^0+/, "");
      const ys = y.replace(/^0+/, "");
      if (xs.length !== ys.length) return xs.length - ys.length;
      if (xs !== ys) return xs < ys ? -1 : 1;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  if (i >= a.length && j >= b.length) return 0;
  return i >= a.length ? -1 : 1;
}

/** rpm's [epoch:]version[-release] comparison. */
export function compareRpm(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(":");
    const epoch = colon > 0 ? v.slice(0, colon) : "0";
    const rest = colon > 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf("-");
    return {
      epoch,
      version: dash >= 0 ? rest.slice(0, dash) : rest,
      release: dash >= 0 ? rest.slice(dash + 1) : "",
    };
  };
  const x = split(a);
  const y = split(b);
  return (
    rpmvercmp(x.epoch, y.epoch) ||
    rpmvercmp(x.version, y.version) ||
    (x.release && y.release ? rpmvercmp(x.release, y.release) : 0)
  );
}

export function versionMatches(
  filter: VersionFilter,
  version: string,
  compare: (a: string, b: string) => number,
): boolean {
  const c = compare(version, filter.version);
  switch (filter.op) {
    case "<":
      return c < 0;
    case "<=":
      return c <= 0;
    case "=":
      return c === 0;
    case ">=":
      return c >= 0;
    case ">":
      return c > 0;
    case "!=":
      return c !== 0;
  }
}

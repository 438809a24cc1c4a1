import { Codes, DragnetError } from "../../../common/mod.js";
import type { DriftParams } from "../../../proto/mod.js";
import { absolutePath, userRegex } from "../check-kit.js";

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const MODES = ["baseline", "check", "list", "watch_start", "watch_list", "watch_stop"];
const DEFAULTS = { maxEntries: 200_000, maxContentBytes: 65_536, rescanSeconds: 300 };
const LIMITS = { maxEntries: 2_000_000, maxContentBytes: 1024 * 1024, rescanSeconds: [5, 86_400] };

/** A drift operation's options, validated, with their defaults. */
export function driftOptions(p: DriftParams) {
  const fail = (message: string): never => {
    throw new DragnetError(Codes.PARAMS, `drift: ${message}`);
  };
  const mode = p.mode || "check";
  if (!MODES.includes(mode)) fail(`mode is one of ${MODES.join(", ")}, not "${p.mode.slice(0, 40)}"`);
  const name = p.name || "default";
  if (!NAME.test(name)) fail(`name "${name.slice(0, 80)}" may hold only letters, digits, . _ - (at most 64)`);
  if ((mode === "baseline" || mode === "watch_start") && p.paths.length === 0)
    fail(`${mode === "baseline" ? "a baseline" : "a watch"} needs at least one path`);
  if (p.paths.length > 64) fail("more than 64 paths");
  const paths = [
    ...new Set(
      p.paths.map((path) => absolutePath(path) ?? fail(`path "${path.slice(0, 200)}" is not absolute`)),
    ),
  ];
  if (p.excludes.length > 64) fail("more than 64 excludes");
  const excludes = p.excludes.map((source) => userRegex("drift: exclude regex", source));
  const maxEntries = p.maxEntries ?? DEFAULTS.maxEntries;
  const maxContentBytes = p.maxContentBytes ?? DEFAULTS.maxContentBytes;
  const rescanSeconds = p.rescanSeconds ?? DEFAULTS.rescanSeconds;
  if (maxEntries < 1 || maxEntries > LIMITS.maxEntries)
    fail(`max entries must be between 1 and ${LIMITS.maxEntries}`);
  if (maxContentBytes > LIMITS.maxContentBytes)
    fail(`max content bytes must be at most ${LIMITS.maxContentBytes}`);
  const [minRescan, maxRescan] = LIMITS.rescanSeconds as [number, number];
  if (rescanSeconds < minRescan || rescanSeconds > maxRescan)
    fail(`rescan seconds must be between ${minRescan} and ${maxRescan}`);
  return { mode, name, paths, excludes, maxEntries, maxContentBytes, rescanSeconds };
}

export function checkDrift(params: DriftParams): void {
  driftOptions(params);
}

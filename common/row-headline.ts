// A schedule alert's row (`file.matches {"path":…,"size":…}`, see
// coordinator/schedule-rows.ts) in a few words for people: the field that
// names the thing — a path, an executable, a package and its version, a
// socket's local address — with the full row kept beside it for detail.

const NAMING_FIELDS = ["path", "exe", "cmdline", "fingerprint", "user", "name", "ip", "host"] as const;

export function rowHeadline(row: string): string {
  const space = row.indexOf(" ");
  const where = space > 0 ? row.slice(0, space) : "";
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(row.slice(space + 1)) as Record<string, unknown>;
  } catch {
    return row.slice(0, 160);
  }
  if (!value || typeof value !== "object") return row.slice(0, 160);
  const text = (k: string) =>
    typeof value[k] === "string" || typeof value[k] === "number" ? String(value[k]) : "";
  let headline = "";
  if (text("name") && text("version")) headline = `${text("name")} ${text("version")}`;
  else if (text("localIp")) headline = `${text("proto")} ${text("localIp")}:${text("localPort")}`.trim();
  else headline = NAMING_FIELDS.map(text).find(Boolean) ?? "";
  if (!headline) return row.slice(0, 160);
  return `${where ? `${where}: ` : ""}${headline}`.slice(0, 300);
}

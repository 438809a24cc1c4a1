import { constants, type Stats } from "node:fs";

/** The `ls -l` mode string of a file, e.g. "-rw-r--r--" or "drwxrwxrwt". */
export function modeString(stats: Pick<Stats, "mode">): string {
  const m = stats.mode;
  const type =
    (m & constants.S_IFMT) === constants.S_IFDIR
      ? "d"
      : (m & constants.S_IFMT) === constants.S_IFLNK
        ? "l"
        : (m & constants.S_IFMT) === constants.S_IFCHR
          ? "c"
          : (m & constants.S_IFMT) === constants.S_IFBLK
            ? "b"
            : (m & constants.S_IFMT) === constants.S_IFIFO
              ? "p"
              : (m & constants.S_IFMT) === constants.S_IFSOCK
                ? "s"
                : "-";
  const bit = (mask: number, ch: string) => (m & mask ? ch : "-");
  const special = (exec: boolean, set: boolean, lower: string, upper: string) =>
    set ? (exec ? lower : upper) : exec ? "x" : "-";
  return (
    type +
    bit(0o400, "r") +
    bit(0o200, "w") +
    special(Boolean(m & 0o100), Boolean(m & 0o4000), "s", "S") +
    bit(0o040, "r") +
    bit(0o020, "w") +
    special(Boolean(m & 0o010), Boolean(m & 0o2000), "s", "S") +
    bit(0o004, "r") +
    bit(0o002, "w") +
    special(Boolean(m & 0o001), Boolean(m & 0o1000), "t", "T")
  );
}

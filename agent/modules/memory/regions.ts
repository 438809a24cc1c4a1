// A process's memory as /proc/PID/maps lists it: the regions that can be
// read through /proc/PID/mem, for the memory and yara modules.

export interface Region {
  start: number;
  end: number;
  line: string;
}

/** Readable mappings; [vsyscall] and [vvar] cannot be read through /proc/PID/mem. */
export function readableRegions(maps: string): Region[] {
  const regions: Region[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (r)\S* /.exec(line);
    if (!m || /\[(vsyscall|vvar|vvar_vclock)\]$/.test(line)) continue;
    const start = Number.parseInt(m[1]!, 16);
    const end = Number.parseInt(m[2]!, 16);
    if (Number.isSafeInteger(end)) regions.push({ start, end, line: line.replace(/\s+/g, " ").trim() });
  }
  return regions;
}

/** Device mappings other than /dev/zero and shared memory: reading them may touch hardware registers. */
export function isDeviceMapping(line: string): boolean {
  const path = line.split(" ").slice(5).join(" ");
  return path.startsWith("/dev/") && !path.startsWith("/dev/zero") && !path.startsWith("/dev/shm/");
}

import { readFileSync } from "node:fs";
import { arch, hostname, networkInterfaces, platform, release } from "node:os";

export interface HostFacts {
  hostname: string;
  os: string;
  osRelease: string;
  arch: string;
  addresses: string[];
}

function osRelease(): string {
  if (platform() === "linux") {
    try {
      const text = readFileSync("/etc/os-release", "utf8");
      const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text);
      if (m?.[1]) return `${m[1]} (kernel ${release()})`;
    } catch {
      // fall through to the kernel release
    }
  }
  return release();
}

/** Non-loopback addresses of the host, IPv4 first. */
export function hostAddresses(): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      (a.family === "IPv4" ? v4 : v6).push(a.address);
    }
  }
  return [...new Set([...v4, ...v6])];
}

/** Addresses are read again after this long: they change rarely, and an idle agent should cost next to nothing. */
const FRESH_FOR_MS = 30_000;
let cached: { at: number; facts: Omit<HostFacts, "hostname"> } | undefined;
/** The OS release changes with a reboot into a new kernel, which restarts the agent too. */
let release_: string | undefined;

export function hostFacts(hostnameOverride?: string, now = Date.now()): HostFacts {
  if (!cached || now - cached.at > FRESH_FOR_MS) {
    release_ ??= osRelease();
    cached = {
      at: now,
      facts: { os: platform(), osRelease: release_, arch: arch(), addresses: hostAddresses() },
    };
  }
  return { hostname: hostnameOverride ?? hostname(), ...cached.facts };
}

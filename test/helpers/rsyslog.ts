import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../../common/ports.js";
import { tempDir } from "./fleet.js";

// A real rsyslogd (Debian's /usr/sbin/rsyslogd) for the syslog sink's tests:
// its own config in a temp dir, listening with imtcp on a free loopback port
// (plain, or TLS through the gtls driver — package rsyslog-gnutls), writing
// what it received to a file as one JSON object per message, built from
// rsyslog's own RFC 5424 parse (msgid, structured-data, msg) plus the raw message.

export const RSYSLOGD = "/usr/sbin/rsyslogd";

/** One message as rsyslog parsed it. */
export interface ReceivedSyslog {
  app: string;
  msgid: string;
  pri: string;
  sd: string;
  msg: string;
  raw: string;
}

export interface RsyslogTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface Rsyslog {
  port: number;
  dir: string;
  /** Where received messages go, one JSON line each. */
  outFile: string;
  pid: number;
  /** Messages received so far (app-name starting "dragnet"). */
  received(): ReceivedSyslog[];
  /** Waits until at least `count` messages arrived; returns them. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedSyslog[]>;
  /** rsyslogd's own stderr so far (for failure messages). */
  stderr(): string;
  stop(): Promise<void>;
}

function config(dir: string, port: number, outFile: string, tls?: RsyslogTls, udp?: boolean): string {
  const q = (s: string) => JSON.stringify(s); // rsyslog strings: double-quoted, backslash escapes
  const driver = tls
    ? ` streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon"` +
      ` streamDriver.caFile=${q(tls.caFile)} streamDriver.certFile=${q(tls.certFile)} streamDriver.keyFile=${q(tls.keyFile)}`
    : "";
  const field = (name: string, property: string) => `\\"${name}\\":\\"%${property}:::json%\\"`;
  const template = [
    field("app", "app-name"),
    field("msgid", "msgid"),
    field("pri", "pri"),
    field("sd", "structured-data"),
    field("msg", "msg"),
    field("raw", "rawmsg"),
  ].join(",");
  return `global(workDirectory=${q(dir)} maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="${port}"${driver})
${udp ? `module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="${port}")\n` : ""}template(name="dragnetJson" type="string" string="{${template}}\\n")
if $app-name startswith "dragnet" then {
  action(type="omfile" file=${q(outFile)} template="dragnetJson")
} else {
  action(type="omfile" file=${q(join(dir, "rsyslogd-own.log"))})
}
`;
}

function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** Starts rsyslogd; `port` to start it again where an earlier one listened. */
export async function startRsyslog(
  options: {
    tls?: RsyslogTls;
    port?: number;
    dir?: string /** Also listen on UDP, same port number. */;
    udp?: boolean;
  } = {},
): Promise<Rsyslog> {
  const dir = options.dir ?? tempDir("dragnet-rsyslog-");
  const port = options.port ?? (await freePort());
  const outFile = join(dir, "received.jsonl");
  const confFile = join(dir, "rsyslog.conf");
  writeFileSync(confFile, config(dir, port, outFile, options.tls, options.udp));
  const child: ChildProcess = spawn(RSYSLOGD, ["-n", "-f", confFile, "-i", join(dir, "rsyslogd.pid")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 10_000;
  // A plain connect proves the listener is up (on TLS rsyslog logs a failed handshake; harmless).
  while (!(await accepting(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`rsyslogd did not start on port ${port}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const received = (): ReceivedSyslog[] =>
    existsSync(outFile)
      ? readFileSync(outFile, "utf8")
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as ReceivedSyslog)
      : [];
  return {
    port,
    dir,
    outFile,
    pid: child.pid!,
    received,
    async waitFor(count, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const got = received();
        if (got.length >= count) return got;
        if (Date.now() > until)
          throw new Error(`rsyslogd received ${got.length} of ${count} messages; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid!, "SIGTERM"); // by pid: this one rsyslogd, nothing else
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

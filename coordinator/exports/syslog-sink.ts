import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { isIP, Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { SyslogSinkConfig } from "./config.js";
import { formatSyslog, octetCounted, type SyslogOptions } from "./formats.js";
import type { Sink } from "./sink.js";
import type { ExportRecord } from "./source.js";

// Syslog to a SIEM's collector (rsyslog, syslog-ng, a Splunk or Elastic syslog
// input): RFC 5424 messages, octet-counted on TCP and TLS (RFC 6587 §3.4.1),
// one datagram each on UDP.
//
// What "delivered" means here, honestly: syslog over TCP has no application
// acknowledgement. A batch counts as delivered once the kernel took all of it
// (the write callback) and the connection then stayed up for a short settle
// interval with no reset, close or error: that catches a receiver that is gone
// (its kernel answers our data with a reset) and one that closed the
// connection between batches (we see its FIN and reconnect before writing).
// It cannot catch a receiver that read the bytes into its socket buffer and
// then died before writing them down: those records are lost, and nothing on
// this side can tell. That is why the HTTP sink (a 2xx after the receiver
// took the batch) is the at-least-once one; RELP, which acknowledges syslog
// frames, is not implemented. UDP is worse still — no connection, no error —
// so the config lets it carry alerts only.

export interface SyslogSinkOptions {
  /** How long the connection must stay healthy after a batch is written (default 100 ms). */
  settleMs?: number;
  /** Connection (and TLS handshake) timeout (default 10 s). */
  connectTimeoutMs?: number;
}

/** A stream connection and a promise that settles (rejects) when it fails in any way. */
interface Stream {
  socket: Socket;
  failed: Promise<never>;
  error?: Error;
}

export class SyslogSink implements Sink {
  readonly #config: SyslogSinkConfig;
  readonly #format: SyslogOptions;
  readonly #settleMs: number;
  readonly #connectTimeoutMs: number;
  #stream?: Stream;
  #udp?: UdpSocket;
  #closed = false;

  constructor(config: SyslogSinkConfig, options: SyslogSinkOptions = {}) {
    this.#config = config;
    this.#settleMs = options.settleMs ?? 100;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#format = {
      facility: config.facility,
      hostname: config.hostname,
      appName: config.appName,
      procId: String(process.pid),
      maxBytes: config.maxMessageBytes,
    };
  }

  async deliver(records: readonly ExportRecord[]): Promise<void> {
    if (this.#closed) throw new Error("syslog sink closed");
    if (records.length === 0) return;
    const messages = records.map((r) => formatSyslog(r, this.#format));
    if (this.#config.transport === "udp") return this.#sendDatagrams(messages);
    const stream = await this.#connection();
    const payload = messages.map(octetCounted).join("");
    await Promise.race([
      stream.failed,
      new Promise<void>((resolve, reject) =>
        stream.socket.write(payload, (err) => (err ? reject(err) : resolve())),
      ),
    ]);
    // The write callback means our kernel has the bytes; wait for a reset or close to show up.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      stream.failed,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#settleMs);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async close(): Promise<void> {
    this.#closed = true;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) {
      const socket = stream.socket;
      if (!socket.destroyed) {
        await new Promise<void>((resolve) => {
          // A polite end; a receiver that does not close its side within a second is cut off.
          const timer = setTimeout(() => socket.destroy(), 1_000);
          socket.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          socket.end();
        });
      }
    }
    const udp = this.#udp;
    this.#udp = undefined;
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
  }

  /** The live connection, or a new one when the last one failed or the receiver closed it. */
  async #connection(): Promise<Stream> {
    const current = this.#stream;
    if (current && !current.error && !current.socket.destroyed) return current;
    this.#stream = undefined;
    current?.socket.destroy();
    const stream = await this.#connect();
    if (this.#closed) {
      stream.socket.destroy();
      throw new Error("syslog sink closed");
    }
    this.#stream = stream;
    return stream;
  }

  #connect(): Promise<Stream> {
    const { host, port, transport, caPem } = this.#config;
    const where = `${transport}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
    return new Promise<Stream>((resolve, reject) => {
      const socket =
        transport === "tls"
          ? tlsConnect({
              host,
              port,
              ...(caPem !== undefined ? { ca: caPem } : {}),
              // The name in the receiver's certificate is checked against `host` (a DNS name or an IP SAN).
              ...(isIP(host) ? {} : { servername: host }),
            })
          : new Socket().connect({ host, port });
      const timer = setTimeout(
        () => socket.destroy(new Error(`syslog ${where}: no connection within ${this.#connectTimeoutMs} ms`)),
        this.#connectTimeoutMs,
      );
      const onEarlyError = (err: Error) => {
        clearTimeout(timer);
        reject(new Error(`syslog ${where}: ${err.message}`, { cause: err }));
      };
      socket.once("error", onEarlyError);
      socket.once(transport === "tls" ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        socket.off("error", onEarlyError);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        const stream: Stream = { socket, failed: undefined as unknown as Promise<never> };
        stream.failed = new Promise<never>((_, fail) => {
          const down = (err: Error) => {
            if (stream.error) return;
            stream.error = err;
            socket.destroy();
            fail(err);
          };
          socket.on("error", (err) => down(new Error(`syslog ${where}: ${err.message}`, { cause: err })));
          // A receiver never half-closes a syslog connection: its FIN means it is going away.
          socket.on("end", () => down(new Error(`syslog ${where}: the receiver closed the connection`)));
          socket.on("close", () => down(new Error(`syslog ${where}: connection closed`)));
        });
        stream.failed.catch(() => {}); // observed by deliver when it matters; never unhandled
        socket.resume(); // receivers send nothing, but reading is how we see their FIN
        resolve(stream);
      });
    });
  }

  async #sendDatagrams(messages: string[]): Promise<void> {
    const { host, port } = this.#config;
    if (!this.#udp) {
      this.#udp = createSocket(isIP(host) === 6 ? "udp6" : "udp4");
      this.#udp.on("error", () => {}); // each send reports its own error to its callback
      this.#udp.unref();
    }
    const udp = this.#udp;
    for (const message of messages) {
      await new Promise<void>((resolve, reject) =>
        udp.send(message, port, host, (err) =>
          err ? reject(new Error(`syslog udp://${host}:${port}: ${err.message}`, { cause: err })) : resolve(),
        ),
      );
    }
  }
}

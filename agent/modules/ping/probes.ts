import { createSocket } from "node:dgram";
import { connect, isIP } from "node:net";

// One TCP or UDP probe, and what it says about the destination. Node opens no
// raw sockets, so this is all an unprivileged process learns: a TCP handshake
// or reset, a UDP reply or the ICMP port-unreachable the kernel turns into
// ECONNREFUSED on a connected datagram socket — or silence.

export type Probe =
  /** Connected (TCP) or replied to (UDP). */
  | { kind: "answered"; rttMs: number }
  /** The host said no: a TCP reset, an ICMP port unreachable. It is up. */
  | { kind: "refused"; rttMs: number }
  /** The network said there is no way there (no route, host unreachable). */
  | { kind: "unreachable"; error: string }
  /** Nothing came back within the timeout. */
  | { kind: "silent" }
  | { kind: "error"; error: string };

/** The network's refusals, in the words ping uses for them (Node's messages give only the code). */
const UNREACHABLE: Record<string, string> = {
  ENETUNREACH: "network is unreachable",
  EHOSTUNREACH: "host is unreachable",
  ENETDOWN: "network is down",
  EHOSTDOWN: "host is down",
};

/** What UDP probes carry: a service that answers anything answers this. */
const UDP_PAYLOAD = Buffer.from("dragnet ping\n");

function errorProbe(err: NodeJS.ErrnoException, started: number): Probe {
  if (err.code === "ECONNREFUSED") return { kind: "refused", rttMs: performance.now() - started };
  if (err.code === "ETIMEDOUT") return { kind: "silent" };
  const unreachable = UNREACHABLE[err.code ?? ""];
  return unreachable
    ? { kind: "unreachable", error: `${unreachable} (${err.code})` }
    : { kind: "error", error: err.message.slice(0, 200) };
}

/** Settles once with the first outcome; the timeout and the abort are outcomes too. */
function settleOnce(
  timeoutMs: number,
  signal: AbortSignal,
  cleanup: () => void,
  resolve: (p: Probe) => void,
): (p: Probe) => void {
  let done = false;
  const finish = (p: Probe) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    cleanup();
    resolve(p);
  };
  const timer = setTimeout(() => finish({ kind: "silent" }), timeoutMs);
  const onAbort = () => finish({ kind: "error", error: "aborted" });
  signal.addEventListener("abort", onAbort, { once: true });
  return finish;
}

/** A TCP connect to `address` (an IP literal): reachable on the handshake, refused on a reset. */
export function tcpProbe(
  address: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Probe> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ host: address, port });
    const finish = settleOnce(timeoutMs, signal, () => socket.destroy(), resolve);
    socket.once("connect", () => finish({ kind: "answered", rttMs: performance.now() - started }));
    socket.once("error", (err) => finish(errorProbe(err, started)));
  });
}

/** A datagram to `address` (an IP literal) on a connected socket: a reply, a refusal, or silence. */
export function udpProbe(
  address: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Probe> {
  return new Promise((resolve) => {
    const socket = createSocket(isIP(address) === 6 ? "udp6" : "udp4");
    let started = performance.now();
    const finish = settleOnce(
      timeoutMs,
      signal,
      () => {
        try {
          socket.close();
        } catch {
          // Already closed by an error.
        }
      },
      resolve,
    );
    socket.once("message", () => finish({ kind: "answered", rttMs: performance.now() - started }));
    // ECONNREFUSED arrives here, from the receive that met the ICMP port unreachable.
    socket.once("error", (err) => finish(errorProbe(err, started)));
    // Called with the error too (no route): then there is nothing to send on.
    socket.connect(port, address, (err?: Error) => {
      if (err) return finish(errorProbe(err, started));
      started = performance.now();
      socket.send(UDP_PAYLOAD, (err) => {
        if (err) finish(errorProbe(err, started));
      });
    });
  });
}

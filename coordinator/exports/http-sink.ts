import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { hostname } from "node:os";
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import { VERSION } from "../../common/mod.js";
import type { HttpSinkConfig } from "./config.js";
import {
  bulkFailure,
  bulkRefusedForData,
  formatBulk,
  formatHec,
  formatNdjson,
  hecAccepted,
} from "./formats.js";
import { RecordsRefused } from "./refusal.js";
import type { Sink } from "./sink.js";
import type { ExportRecord } from "./source.js";

// POSTs each batch to a SIEM's HTTP input: plain NDJSON, Splunk HEC, or an
// Elasticsearch/OpenSearch `_bulk` endpoint. The at-least-once sink: a batch
// counts as delivered only when the receiver answered 2xx (and, for HEC, code
// 0; for `_bulk`, no item failed other than as a repeat, 409). Anything else
// rejects, and the exporter sends the whole batch again later — repeats carry
// the same ids (the `_bulk` `_id`, HEC's fields.dragnet_id) so they can be told apart.
// A 400 or 401 is retried too: records are never skipped, and the sink's
// status shows the error until someone fixes the token or the receiver.

const gzip = promisify(gzipCallback);

/** The receiver's answer is read up to this much (a _bulk answer for 10,000 items fits). */
const MAX_ANSWER_BYTES = 16 << 20;

const CONTENT_TYPE: Record<HttpSinkConfig["format"], string> = {
  ndjson: "application/x-ndjson",
  hec: "application/json",
  bulk: "application/x-ndjson",
};

export class HttpSink implements Sink {
  readonly #config: HttpSinkConfig;
  readonly #url: URL;
  readonly #agent: HttpAgent;
  readonly #closing = new AbortController();
  readonly #defaultHost = hostname();

  constructor(config: HttpSinkConfig) {
    this.#config = config;
    this.#url = new URL(config.url);
    const agentOptions = { keepAlive: true, maxSockets: 1 };
    this.#agent =
      this.#url.protocol === "https:"
        ? new HttpsAgent({ ...agentOptions, ...(config.caPem !== undefined ? { ca: config.caPem } : {}) })
        : new HttpAgent(agentOptions);
  }

  /** The request body for these records, in the sink's format (before gzip). */
  body(records: readonly ExportRecord[]): string {
    const { format, index } = this.#config;
    if (format === "hec")
      return formatHec(records, { defaultHost: this.#defaultHost, ...(index ? { index } : {}) });
    if (format === "bulk") return formatBulk(records, index);
    return formatNdjson(records);
  }

  async deliver(records: readonly ExportRecord[]): Promise<void> {
    if (this.#closing.signal.aborted) throw new Error("http sink closed");
    if (records.length === 0) return;
    const { format, gzip: compress, headers, timeoutMs } = this.#config;
    const plain = Buffer.from(this.body(records), "utf8");
    const payload = compress ? await gzip(plain) : plain;
    const { status, text } = await this.#post(
      payload,
      {
        "User-Agent": `dragnet/${VERSION}`,
        "Content-Type": CONTENT_TYPE[format],
        ...(compress ? { "Content-Encoding": "gzip" } : {}),
        ...headers,
        "Content-Length": String(payload.length),
      },
      timeoutMs,
    );
    const where = `${this.#url.origin}${this.#url.pathname}`;
    if (status === 400 || status === 413 || status === 422) {
      throw new RecordsRefused(`${where}: HTTP ${status}: ${text.slice(0, 200)}`);
    }
    if (status < 200 || status > 299) throw new Error(`${where}: HTTP ${status}: ${text.slice(0, 200)}`);
    if (format === "hec" && !hecAccepted(text))
      throw new Error(`${where}: HTTP ${status} but HEC did not answer code 0: ${text.slice(0, 200)}`);
    if (format === "bulk") {
      const failure = bulkFailure(text);
      if (failure) {
        throw bulkRefusedForData(text)
          ? new RecordsRefused(`${where}: ${failure}`)
          : new Error(`${where}: ${failure}`);
      }
    }
  }

  async close(): Promise<void> {
    this.#closing.abort(new Error("http sink closed"));
    this.#agent.destroy();
  }

  #post(
    payload: Buffer,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<{ status: number; text: string }> {
    const request = this.#url.protocol === "https:" ? httpsRequest : httpRequest;
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(timeoutMs)]);
    return new Promise((resolve, reject) => {
      const fail = (err: Error) =>
        reject(
          new Error(
            signal.aborted && err.name === "AbortError"
              ? `${this.#url.origin}: ${this.#closing.signal.aborted ? "sink closed" : `no answer within ${timeoutMs} ms`}`
              : `${this.#url.origin}: ${err.message}`,
            { cause: err },
          ),
        );
      const req = request(
        this.#url,
        { method: "POST", headers, agent: this.#agent, signal },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size <= MAX_ANSWER_BYTES) chunks.push(chunk);
          });
          res.on("error", fail);
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          );
        },
      );
      req.on("error", fail);
      req.end(payload);
    });
  }
}

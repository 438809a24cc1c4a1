import type { ExportSinkConfig } from "./config.js";
import { FileSink } from "./file-sink.js";
import { HttpSink } from "./http-sink.js";
import type { ExportRecord } from "./source.js";
import { SyslogSink } from "./syslog-sink.js";

export { RecordsRefused } from "./refusal.js";

/** A receiver's end of one sink. */
export interface Sink {
  /** Resolves once the receiver took every record (as far as its protocol can tell); rejects otherwise. */
  deliver(records: readonly ExportRecord[]): Promise<void>;
  /** Ends connections and open files; a delivery in flight rejects. */
  close(): Promise<void>;
}

export function openSink(config: ExportSinkConfig): Sink {
  switch (config.type) {
    case "syslog":
      return new SyslogSink(config);
    case "http":
      return new HttpSink(config);
    case "file":
      return new FileSink(config);
  }
}

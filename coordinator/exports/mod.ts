// The public face of the exports: what the coordinator uses to deliver its
// records to a SOC's receivers (syslog, HTTP — NDJSON, Splunk HEC,
// Elasticsearch/OpenSearch _bulk — and files).
export {
  EXPORT_DEFAULTS,
  type ExportSinkConfig,
  type FileSinkConfig,
  type HttpFormat,
  type HttpSinkConfig,
  parseExports,
  type RetrySettings,
  type SyslogSinkConfig,
  type SyslogTransport,
} from "./config.js";
export { Exporter, type ExporterOptions, type SinkStatus } from "./exporter.js";
export { MemoryExportSource } from "./memory-source.js";
export { openSink, type Sink } from "./sink.js";
export { EXPORT_KINDS, type ExportKind, type ExportRecord, type ExportSource } from "./source.js";

// The shapes the page and its server exchange where both build or read them
// field by field: types only (no imports), so the browser's build and the
// server's share them without either pulling in the other's runtime.

/** What the investigator is shown before signing (a new action's preview, or an approval's review). */
export interface Shown {
  id: string;
  name: string;
  target: string;
  /**
   * Each operation as signed: its module and every parameter (JSON text). All
   * text here is as the CLI prints it: control and bidirectional characters
   * escaped, so nothing signed can hide behind them.
   */
  operations: { module: string; parameters: string }[];
  description: string;
  incidentId: string;
  validFrom: string;
  expires: string;
  expiresIn: string;
  timeout: string;
  agents: { count: number; offline: number; hosts: { hostname: string; status: string }[] };
  /** Empty, or what the signatures still lack by this console's keyring. */
  approval: string;
}

export interface FormField {
  flag: string;
  help: string;
  /** "switch": a checkbox; "value": one value; "list": one value per line (the flag repeats). */
  kind: "switch" | "value" | "list";
  /** The value's name in the CLI's help (<path>, <regex>…). */
  placeholder: string;
  required: boolean;
  default?: string;
}

/** A form: one CLI command and its options. */
export interface Form {
  command: string;
  help: string;
  fields: FormField[];
}

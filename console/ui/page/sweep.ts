import { html } from "htm/preact";
import { useState } from "preact/hooks";
import type { Form } from "../wire.js";
import { go, postJson, type Shown, ShownAction, useDebounced, useLoad } from "./lib.js";

// New sweeps and responses: one form per CLI command, drawn from the
// command's own options. Nothing is signed from the form: the server first
// shows the action it would sign, and signs it on a second click.

export const SWEEPS = [
  "file",
  "process",
  "netstat",
  "memory",
  "drift baseline",
  "drift check",
  "drift watch start",
];
export const RESPONSES = [
  "isolate",
  "unisolate",
  "kill",
  "quarantine add",
  "quarantine list",
  "quarantine restore",
  "collect",
];

const idOf = (command: string, flag: string) => `f-${command.replace(/ /g, "-")}-${flag.replace(/^-+/, "")}`;

/** The target's agents as typed: how many, which, or where the expression is wrong. */
function TargetPreview({ target }: { target: string }) {
  const settled = useDebounced(target.trim(), 200);
  const { data, error } = useLoad<{ agents: { hostname: string }[] }>(
    settled ? `/api/agents?target=${encodeURIComponent(settled)}` : undefined,
  );
  if (!settled) return null;
  if (error) return html`<pre class="error" role="alert" id="target-error">${error}</pre>`;
  if (!data) return null;
  const hosts = data.agents.map((a) => a.hostname);
  return html`<p class="muted" id="target-preview">matches <strong>${hosts.length}</strong> agent${hosts.length === 1 ? "" : "s"} now${hosts.length ? ": " : ""}${hosts.slice(0, 12).join(", ")}${hosts.length > 12 ? ` and ${hosts.length - 12} more` : ""}</p>`;
}

function FormFields({
  form,
  values,
  set,
}: {
  form: Form;
  values: Record<string, unknown>;
  set(flag: string, v: unknown): void;
}) {
  return html`${form.fields.map((f) => {
    const id = idOf(form.command, f.flag);
    const label = f.flag.replace(/^--/, "");
    const required = f.required || f.flag === "--target";
    if (f.kind === "switch")
      return html`<div class="field switch"><input type="checkbox" id=${id} checked=${values[f.flag] === true}
        onChange=${(e: Event) => set(f.flag, (e.target as HTMLInputElement).checked)} />
        <label for=${id}>${label}</label><span class="help">${f.help}</span></div>`;
    const input =
      f.kind === "list"
        ? html`<textarea id=${id} rows="2" placeholder=${`${f.placeholder}, one per line`} value=${(values[f.flag] as string) ?? ""}
            onInput=${(e: Event) => set(f.flag, (e.target as HTMLTextAreaElement).value)}></textarea>`
        : html`<input id=${id} placeholder=${f.default ? `${f.placeholder} (default ${f.default})` : f.placeholder} required=${required}
            value=${(values[f.flag] as string) ?? ""} onInput=${(e: Event) => set(f.flag, (e.target as HTMLInputElement).value)} />`;
    return html`<div class="field"><label for=${id}>${label}${required ? html`<span class="required" title="required"> *</span>` : null}</label>
      ${input}<span class="help">${f.help}</span>
      ${f.flag === "--target" ? html`<${TargetPreview} target=${(values["--target"] as string) ?? ""} />` : null}</div>`;
  })}`;
}

interface Preview {
  preview: string;
  commandLine: string;
  action: Shown;
}

export function NewAction({ commands, title, me }: { commands: string[]; title: string; me: string }) {
  const { data } = useLoad<{ forms: Form[] }>("/api/forms");
  const [command, setCommand] = useState(commands[0]!);
  const [values, setValues] = useState<Record<string, Record<string, unknown>>>({});
  const [error, setError] = useState("");
  const [preview, setPreview] = useState<Preview>();
  const [signed, setSigned] = useState<{ actionId: string; weight: number; requiredWeight: number }>();
  const [busy, setBusy] = useState(false);
  const form = data?.forms.find((f) => f.command === command);
  const mine = values[command] ?? {};
  const set = (flag: string, v: unknown) => setValues({ ...values, [command]: { ...mine, [flag]: v } });
  const ask = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      setPreview(await postJson<Preview>("/api/preview", { command, values: mine }));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const sign = async () => {
    setBusy(true);
    try {
      const r = await postJson<{
        actionId: string;
        pendingApproval: boolean;
        weight: number;
        requiredWeight: number;
      }>("/api/sign", { preview: preview!.preview });
      setPreview(undefined);
      if (r.pendingApproval) setSigned(r);
      else go(`#/action/${r.actionId}`);
    } catch (err) {
      setError((err as Error).message);
      setPreview(undefined);
    } finally {
      setBusy(false);
    }
  };
  if (signed)
    return html`<section><h1>${title}</h1>
      <p class="warning" role="status" id="signed-pending">Signed by ${me}: action <code>${signed.actionId}</code> waits for a second investigator
      (weight ${signed.weight} of ${signed.requiredWeight}). Nothing runs until someone approves it in <a href="#/approvals">Approvals</a> with their own key.</p>
      <p><a href=${`#/action/${signed.actionId}`}>Follow the action</a> · <button onClick=${() => setSigned(undefined)}>Another one</button></p></section>`;
  if (preview)
    return html`<section class="confirm" aria-labelledby="confirm-title">
      <h1 id="confirm-title">Sign this action?</h1>
      <p>Check what will run and where. Signing uses your key (<strong>${me}</strong>), which stays in the dragnet ui process.</p>
      <${ShownAction} action=${preview.action} />
      <p class="muted">The same from a terminal: <code id="command-line">${preview.commandLine}</code></p>
      <div class="buttons"><button id="sign" class="primary" disabled=${busy} onClick=${sign}>Sign and send as ${me}</button>
      <button id="back" onClick=${() => setPreview(undefined)}>Change it</button></div>
    </section>`;
  return html`
    <section>
      <h1>${title}</h1>
      <div class="choices" role="tablist">${commands.map(
        (
          c,
        ) => html`<button role="tab" id=${`form-${c.replace(/ /g, "-")}`} aria-selected=${c === command} class=${c === command ? "current" : ""}
          onClick=${() => {
            setCommand(c);
            setError("");
          }}>${c}</button>`,
      )}</div>
      ${
        form
          ? html`<form onSubmit=${ask} class="action-form">
            <p class="muted">${form.help}</p>
            <${FormFields} form=${form} values=${mine} set=${set} />
            ${error ? html`<pre class="error" role="alert" id="form-error">${error}</pre>` : null}
            <div class="buttons"><button type="submit" id="preview" class="primary" disabled=${busy}>Preview</button></div>
          </form>`
          : html`<p>loading…</p>`
      }
    </section>
  `;
}

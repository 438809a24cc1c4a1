import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { getJson, go, postJson, type Shown, ShownAction } from "./lib.js";

// The second investigator's page: the action decoded from the very bytes to
// be signed (not the coordinator's description of it), who signed it so far
// (checked against this console's keyring), and one button to co-sign.

interface Review {
  action: Shown;
  signers: { name: string; keyId: string }[];
  you: string;
  bodySha256: string;
}

export function Approve({ id }: { id: string }) {
  const [review, setReview] = useState<Review>();
  const [error, setError] = useState("");
  const [outcome, setOutcome] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    getJson<Review>(`/api/actions/${encodeURIComponent(id)}/review`).then(setReview, (e: Error) =>
      setError(e.message),
    );
  }, [id]);
  const approve = async () => {
    setBusy(true);
    try {
      const r = await postJson<{
        actionId: string;
        released: boolean;
        weight: number;
        requiredWeight: number;
      }>(`/api/actions/${encodeURIComponent(id)}/approve`, { bodySha256: review!.bodySha256 });
      if (r.released) go(`#/action/${r.actionId}`);
      else
        setOutcome(
          `Approved by ${review!.you}: weight ${r.weight} of ${r.requiredWeight}; it still waits for another investigator.`,
        );
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <section class="confirm">
      <h1>Approve this action?</h1>
      ${error ? html`<pre class="error" role="alert" id="approve-error">${error}</pre>` : null}
      ${outcome ? html`<p class="warning" role="status">${outcome}</p>` : null}
      ${
        review
          ? html`<p>Signed so far by <strong id="signers">${review.signers.map((s) => `${s.name} (${s.keyId})`).join(", ")}</strong> — signatures checked against your keyring.</p>
          <${ShownAction} action=${review.action} />
          <div class="buttons">
            <button id="approve" class="primary" disabled=${busy || outcome !== ""} onClick=${approve}>Approve and sign as ${review.you}</button>
            <button onClick=${() => go("#/approvals")}>Leave it</button>
          </div>`
          : error
            ? null
            : html`<p>loading…</p>`
      }
    </section>
  `;
}

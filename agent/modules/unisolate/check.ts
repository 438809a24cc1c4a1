import type { UnisolateParams } from "../../../proto/mod.js";

/** Nothing to refuse: unisolate lifts only the agent's own rules, or reports them (statusOnly). */
export function checkUnisolate(_params: UnisolateParams): void {}

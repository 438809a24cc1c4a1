import { Codes, DragnetError } from "../../../common/mod.js";
import { packageRoot } from "../host/package-files.js";
import { defineModule } from "../registry.js";
import { checkTimedrift, DEFAULT_MAX_DRIFT_MS } from "./check.js";
import { sampleClock } from "./clock.js";
import { ntpState } from "./ntp-state.js";

// `timedrift`: how far this host's clock is from the coordinator's (timelines
// built from its logs are off by that much), measured over the command's own
// link, and whether NTP disciplines it. Found when the difference passes the
// action's threshold.

/** Exchanges per run: the fastest of five is good on any link that is not saturated. */
const SAMPLES = 5;
const EXCHANGE_TIMEOUT_MS = 2000;

export const timedriftModule = defineModule({
  name: "timedrift",
  check: checkTimedrift,
  async run(p, ctx) {
    if (!ctx.ask)
      throw new DragnetError(
        Codes.MODULE_FAILED,
        "timedrift: there is no coordinator to compare with (the module runs only from a command)",
      );
    const maxDriftMs = p.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    const clock = await sampleClock(ctx.ask, {
      samples: SAMPLES,
      timeoutMs: EXCHANGE_TIMEOUT_MS,
      signal: ctx.signal,
    });
    // After the exchanges: starting programs meanwhile would slow some of them.
    const state = await ntpState({ root: packageRoot(), signal: ctx.signal });
    return {
      found: Math.abs(clock.offsetMs) > maxDriftMs,
      result: {
        offsetMs: clock.offsetMs,
        rttMs: clock.rttMs,
        samples: clock.samples,
        agentTimeMs: Date.now(),
        ntp: state.ntp,
        ntpBy: state.by,
        ntpSource: state.source,
        maxDriftMs,
        errors: [...clock.errors, ...state.errors],
      },
    };
  },
});

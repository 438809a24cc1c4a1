import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import type { TestFleet } from "./fleet.js";

// For sweeps that something goes wrong in the middle of: a real file search
// slowed down (so a sweep is still running when a process is killed), and a
// record of every command a coordinator sent.

/** The file module, taking `delayMs` longer each run and counting runs per host in `ran`. */
export function slowFileModule(hostname: string, delayMs: number, ran: Map<string, number>) {
  return defineModule({
    ...fileModule,
    async run(params, ctx) {
      ran.set(hostname, (ran.get(hostname) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, delayMs));
      return fileModule.run(params, ctx);
    },
  });
}

/** Every command published from now on: to which agent, and when. */
export async function recordCommandsSent(fleet: TestFleet): Promise<Array<{ agent: string; at: number }>> {
  const spy = await fleet.connectNats({ observe: ["dragnet.cmd.*"] });
  const sent: Array<{ agent: string; at: number }> = [];
  spy.subscribe("dragnet.cmd.*", {
    callback: (_e, m) => {
      sent.push({ agent: m.subject.split(".")[2]!, at: Date.now() });
    },
  });
  await spy.flush();
  return sent;
}

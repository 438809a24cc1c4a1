import { spawn } from "node:child_process";
import type { Command } from "commander";
import { globalsOf, handle, nonNegativeInt } from "../cli-kit.js";
import { openClient } from "../home.js";
import { startUiServer } from "../ui/server.js";

// `dragnet ui`: the web console, served from this console process on loopback,
// with this console's coordinator, CA and key.

export function registerUiCommand(program: Command): void {
  program
    .command("ui")
    .description("the web console on 127.0.0.1: prints a one-time link; the page never holds your key")
    .option("--port <n>", "the port to listen on (default: a free one)", nonNegativeInt("--port"), 0)
    .option("--no-open", "do not open a browser, only print the link")
    .action(
      handle(async (flags: { port: number; open: boolean }, command: Command) => {
        const api = openClient(globalsOf(command));
        const ui = await startUiServer(api, globalsOf(command), flags.port);
        process.stdout.write(`${ui.url}\n`);
        process.stderr.write("dragnet ui: open the link above (it works once); Ctrl-C stops the server\n");
        if (flags.open) {
          // Best effort: a desktop's opener, if there is one.
          spawn("xdg-open", [ui.url], { stdio: "ignore", detached: true })
            .on("error", () => undefined)
            .unref();
        }
        await new Promise<void>((resolve) => {
          for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
        });
        await ui.close();
        api.close();
        return 0;
      }),
    );
}

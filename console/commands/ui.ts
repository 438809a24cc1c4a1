import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { globalsOf, handle, nonNegativeInt } from "../cli-kit.js";
import { homeDir, openClient } from "../home.js";
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
        const api = await openClient(globalsOf(command));
        const globals = globalsOf(command);
        const ui = await startUiServer(api, globals, flags.port, () =>
          process.stderr.write(
            `dragnet ui: the link was used at ${new Date().toISOString()}; if that was not you, stop this (Ctrl-C)\n`,
          ),
        );
        process.stdout.write(`${ui.url}\n`);
        process.stderr.write("dragnet ui: open the link above (it works once); Ctrl-C stops the server\n");
        if (flags.open) {
          // A desktop's opener, if there is one, gets a file only this user can read, not
          // the link: a command line is visible to every user of the machine.
          mkdirSync(homeDir(globals), { recursive: true, mode: 0o700 });
          const launcher = join(homeDir(globals), "ui-open.html");
          writeFileSync(
            launcher,
            `<!doctype html><meta http-equiv="refresh" content="0;url=${ui.url}"><a href="${ui.url}">Dragnet</a>\n`,
            { mode: 0o600 },
          );
          chmodSync(launcher, 0o600);
          spawn("xdg-open", [launcher], { stdio: "ignore", detached: true })
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

import { Command } from "commander";
import { createLogger, describeError, VERSION } from "../common/mod.js";
import { startGrpcServer } from "./api/server.js";
import { loadCoordinatorConfig } from "./config.js";
import { Coordinator } from "./coordinator.js";

const program = new Command("dragnet-coordinator")
  .description("Dragnet coordinator: agent registry, action fan-out, result store and the console API")
  .version(VERSION, "-V, --version")
  .requiredOption("-c, --config <file>", "coordinator configuration (JSON)")
  .action(async (opts: { config: string }) => {
    let log = createLogger("coordinator");
    try {
      const config = loadCoordinatorConfig(opts.config);
      log = createLogger("coordinator", { level: config.logLevel });
      const coordinator = await Coordinator.open(config, { log });
      await coordinator.start();
      const { server, port } = await startGrpcServer(
        coordinator,
        config.grpc.listen,
        config.grpc.insecure ? "insecure" : { cert: config.grpc.cert!, key: config.grpc.key! },
        log,
      );
      log.info("API listening", { port, tls: !config.grpc.insecure });
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info("stopping", { signal });
        setTimeout(() => process.exit(1), 10_000).unref();
        server.forceShutdown();
        await coordinator.stop();
        process.exit(0);
      };
      process.on("SIGTERM", () => void stop("SIGTERM"));
      process.on("SIGINT", () => void stop("SIGINT"));
    } catch (err) {
      process.stderr.write(`dragnet-coordinator: ${describeError(err)}\n`);
      process.exit(2);
    }
  });

program.parseAsync(process.argv);

import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration and end-to-end files start their own nats-server on free
    // loopback ports, so files can run side by side; two cores, two workers.
    maxWorkers: 2,
    pool: "forks",
  },
});

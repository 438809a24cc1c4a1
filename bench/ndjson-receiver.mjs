// A receiver for bench:exports, in a process of its own so that it takes no
// CPU time from the coordinator's event loop: it accepts NDJSON POSTs, counts
// records and distinct ids, and answers GET /stats with what it saw.
import { createServer } from "node:http";

const seen = new Set();
const stats = { records: 0, unique: 0, firstMs: 0, lastMs: 0, requests: 0 };
const server = createServer((req, res) => {
  if (req.method === "GET") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(stats));
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    stats.requests++;
    for (const line of Buffer.concat(chunks).toString("utf8").split("\n")) {
      if (!line) continue;
      const id = JSON.parse(line).id;
      stats.records++;
      if (!seen.has(id)) {
        seen.add(id);
        stats.unique++;
      }
    }
    const now = Date.now();
    stats.firstMs ||= now;
    stats.lastMs = now;
    res.writeHead(200);
    res.end();
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write("ready\n"));

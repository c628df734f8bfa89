// The worker's CPU time per 100-event batch, in workerd (Miniflare) against the real receiver:
// what the Workers Free plan allows 10 ms of per invocation. `scripts/worker-size` runs it:
//
//   node tests/worker/cpu.mjs [batches]
//
// It reads the workerd process's own CPU time (user + system, /proc) across the batches, so the
// figure includes workerd's share of the fetch and the queue plumbing: an upper bound of what
// Cloudflare counts (the isolate's CPU, never time spent waiting on the receiver).

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Miniflare } from "miniflare";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN_DIR = process.env.RELAY_BIN_DIR ?? path.join(ROOT, "target/debug");
const RELAY_BIN = path.join(BIN_DIR, "bucket-relay");
const CONTRACT = JSON.parse(execFileSync(path.join(BIN_DIR, "examples/contract"), { encoding: "utf8" }));
const VARS = CONTRACT.worker.vars;
const BUILD = path.join(ROOT, "worker/build");
const BATCHES = Number(process.argv[2] ?? 50);
const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));

const port = await new Promise((resolve) => {
  const server = createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});
const dir = mkdtempSync(path.join(tmpdir(), "relay-cpu-"));
const url = `http://127.0.0.1:${port}`;
const receiver = spawn(RELAY_BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir, "--log", "warn"],
  { stdio: "ignore" });
for (let i = 0; i < 200; i++) {
  try {
    if ((await fetch(`${url}/healthz`)).ok) break;
  } catch {}
  await new Promise((r) => setTimeout(r, 50));
}
const integration = JSON.parse(execFileSync(RELAY_BIN, ["--data-dir", dir, "--json", "integrations", "create",
  "--provider", "r2", "--bucket", "uploads", "--receiver-url", url], { encoding: "utf8" }));

const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(BUILD, "index.js"),
  modulesRoot: BUILD,
  modulesRules: [
    { type: "ESModule", include: ["**/*.js"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  compatibilityDate: "2026-01-01",
  bindings: {
    [VARS.receiver_url]: url,
    [VARS.integration_id]: integration.id,
    [VARS.allow_insecure]: "true",
    [CONTRACT.worker.secret]: integration.secret,
  },
  queueConsumers: [CONTRACT.worker.queue],
  queueProducers: { [CONTRACT.worker.dead_letter_binding]: CONTRACT.worker.dead_letter_queue },
});

/** CPU seconds (user + system) the workerd processes under this one have used. */
function workerdCpu() {
  const children = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)], { encoding: "utf8" })
    .split("\n").map((l) => l.trim().split(/\s+/)).filter(([, comm]) => comm === "workerd");
  return children.reduce((total, [pid]) => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(")").pop().trim().split(/\s+/);
    return total + (Number(fields[11]) + Number(fields[12])) / TICKS;
  }, 0);
}

let serial = 0;
function batch() {
  return Array.from({ length: 100 }, () => {
    serial += 1;
    const key = `cpu/${serial}.pdf`;
    return {
      id: `m-${serial}`, timestamp: new Date(), attempts: 1,
      body: { account: "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f", action: "PutObject", bucket: "uploads",
              object: { key, size: 1024, eTag: serial.toString(16).padStart(32, "0") },
              eventTime: new Date().toISOString() },
    };
  });
}

try {
  const worker = await mf.getWorker();
  for (let i = 0; i < 5; i++) await worker.queue(CONTRACT.worker.queue, batch()); // warm up
  const cpuBefore = workerdCpu();
  const started = performance.now();
  for (let i = 0; i < BATCHES; i++) {
    const result = await worker.queue(CONTRACT.worker.queue, batch());
    if (result.explicitAcks.length !== 100) throw new Error(`batch not acked: ${JSON.stringify(result)}`);
  }
  const wall = (performance.now() - started) / BATCHES;
  const cpu = ((workerdCpu() - cpuBefore) / BATCHES) * 1000;
  console.log(`worker CPU per 100-event batch: ${cpu.toFixed(2)} ms (workerd's, over ${BATCHES} batches; ` +
    `the Free plan allows 10 ms); wall ${wall.toFixed(1)} ms with the receiver's answer`);
} finally {
  await mf.dispose();
  receiver.kill();
}

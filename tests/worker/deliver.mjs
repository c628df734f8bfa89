// Runs a worker exactly as it was uploaded through Cloudflare's API (its modules, its metadata's
// main module, bindings and compatibility date) in workerd, and delivers queue messages to it:
// what Cloudflare does with a message published onto a queue the worker consumes. The
// recording API server (tests/cloudflare_api.py) keeps the upload; tests/test_connect_r2.py
// writes it out with the messages and runs:
//
//   node tests/worker/deliver.mjs <upload.json>
//
// upload.json: {"main_module", "compatibility_date", "bindings": [...], "modules":
// [{"name", "content_type", "path"}], "queue", "messages": [<body>...]}. Prints the batch's
// result (acks and retries) as JSON.

import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";

const upload = JSON.parse(readFileSync(process.argv[2], "utf8"));
const TYPES = { "application/javascript+module": "ESModule", "application/wasm": "CompiledWasm" };

const modules = upload.modules.map((m) => {
  const type = TYPES[m.content_type];
  if (!type) throw new Error(`module ${m.name}: content type ${m.content_type} is not one workerd takes`);
  return { type, path: `/upload/${m.name}`, contents: readFileSync(m.path) };
});
// The main module first: Miniflare runs the first module.
const main = `/upload/${upload.main_module}`;
modules.sort((a, b) => (a.path === main ? -1 : b.path === main ? 1 : 0));

const bindings = {};
const queueProducers = {};
for (const b of upload.bindings) {
  if (b.type === "plain_text" || b.type === "secret_text") bindings[b.name] = b.text;
  else if (b.type === "queue") queueProducers[b.name] = b.queue_name;
  else throw new Error(`binding ${b.name}: type ${b.type} is not one this runner knows`);
}

const mf = new Miniflare({
  modules,
  modulesRoot: "/upload",
  compatibilityDate: upload.compatibility_date,
  bindings,
  queueProducers,
});
try {
  const worker = await mf.getWorker();
  const messages = upload.messages.map((body, i) => ({
    id: `published-${i}`,
    timestamp: new Date(),
    body,
    attempts: 1,
  }));
  const result = await worker.queue(upload.queue, messages);
  console.log(JSON.stringify(result));
} finally {
  await mf.dispose();
}

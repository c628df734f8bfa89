// The worker end to end: its real release WASM in workerd (Miniflare 4) against the real
// `bucket-relay serve` binary. Each test puts R2-notification-shaped messages on the worker's
// queue (local R2 emits no notifications, see docs/toolchain.md), runs the consumer on the batch, and
// checks the worker's acks, retries and dead-letters, the requests the receiver saw, and the jobs
// that came out on the receiver's queue.

import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Miniflare } from "miniflare";
import { parse as parseToml } from "smol-toml";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN_DIR = process.env.RELAY_BIN_DIR ?? path.join(ROOT, "target/debug");
const RELAY_BIN = path.join(BIN_DIR, "bucket-relay");
// The receiver's machine-readable contract (receiver/src/contract.rs): the worker's var, secret,
// queue and binding names, and the receiver's staleness bound, from their one definition.
const CONTRACT = JSON.parse(execFileSync(path.join(BIN_DIR, "examples/contract"), { encoding: "utf8" }));
const VARS = CONTRACT.worker.vars;
const SECRET = CONTRACT.worker.secret;
const BUILD = path.join(ROOT, "worker/build");
// The customer's own wrangler.toml: its queue settings and [vars] configure Miniflare, so the
// template the customer deploys and the worker under test cannot drift apart.
const WRANGLER = parseToml(readFileSync(path.join(ROOT, "wrangler.toml"), "utf8"));
const CONSUMER = WRANGLER.queues.consumers.find((c) => c.queue === CONTRACT.worker.queue);
// The worker also consumes its dead-letter queue, to replay it (delivery paused until resumed).
const REPLAY = WRANGLER.queues.consumers.find((c) => c.queue === CONTRACT.worker.dead_letter_queue);
const [PRODUCER] = WRANGLER.queues.producers;
const QUEUE = CONSUMER.queue;
// How long a running receiver may go on with an integration it read before a CLI change, with a
// margin.
const CONFIG_STALENESS_MS = CONTRACT.receiver.integration_staleness_seconds * 1000 + 200;
const DLQ = CONSUMER.dead_letter_queue;
// The checked-in JSON Schema of each job schema (docs/schemas): every job these tests read off the
// receiver's queue is held to its own, as the pytest suite's are.
const ajv = addFormats(new Ajv2020({ allErrors: true, strict: true }));
const JOB_SCHEMAS = Object.fromEntries(["v1", "v2"].map((v) => [
  `ingest-job/${v}`,
  ajv.compile(JSON.parse(readFileSync(path.join(ROOT, `docs/schemas/ingest-job-${v}.schema.json`), "utf8"))),
]));

function validJob(job) {
  const validate = JOB_SCHEMAS[job.schema];
  assert.ok(validate, `a job of no known schema: ${job.schema}`);
  assert.ok(validate(job), `${job.schema} job breaks its JSON Schema: ${JSON.stringify(validate.errors)}`);
  return job;
}

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// The "minute" of `--max-jobs-per-minute` lasts half a second in these receivers, so a burst a
// limit spreads over minutes takes seconds here, window for window the same.
const RATE_WINDOW_S = 0.5;

/** A running receiver (`bucket-relay serve`) and its CLI on the same data directory. */
class Receiver {
  constructor(env = {}) {
    this.dir = mkdtempSync(path.join(tmpdir(), "relay-"));
    this.env = { ...process.env, RELAY_RATE_WINDOW: `${RATE_WINDOW_S * 1000}ms`, ...env };
    this.logPath = path.join(this.dir, "serve.log");
    this.logText = "";
  }

  async start() {
    this.port ??= await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.process = spawn(RELAY_BIN, ["serve", "--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dir], {
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process.stdout.on("data", (chunk) => (this.logText += chunk));
    this.process.stderr.on("data", (chunk) => (this.logText += chunk));
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`receiver did not start:\n${this.logText}`);
  }

  /** SIGKILL: the receiver dies mid-request, with no shutdown. */
  async crash() {
    if (!this.process || this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGKILL");
    await exited;
  }

  async stop() {
    if (!this.process || this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGTERM");
    await exited;
  }

  cli(...args) {
    const out = execFileSync(RELAY_BIN, ["--data-dir", this.dir, "--json", ...args], { env: this.env, maxBuffer: 256 * 1024 * 1024 });
    return JSON.parse(out.toString());
  }

  jobs() {
    return this.cli("jobs", "list").map(validJob);
  }

  /**
   * The receiver's `request` log lines once there are at least `count`: a line is written as
   * the answer goes out, and reaches this process through a pipe a moment later.
   */
  async loggedRequests(count) {
    for (let i = 0; i < 60 && this.requests().length < count; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.requests();
  }

  /** The receiver's `request` log lines: one per HTTP request the worker made. */
  requests() {
    return this.logText
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line))
      .filter((line) => line.message === "request");
  }
}

function notification(key, { action = "PutObject", bucket = "uploads", size = 1024, etag } = {}) {
  const object = { key };
  if (!action.startsWith("Delete") && action !== "LifecycleDeletion") {
    object.size = size;
    object.eTag = etag ?? Buffer.from(key).toString("hex").slice(0, 32).padEnd(32, "0");
  }
  return { account: "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f", action, bucket, object, eventTime: "2026-11-22T10:00:00.000Z" };
}

/** The `bundle/` folder of the package the current test's integration was given. */
let packagedBundle = BUILD;

let nextId = 0;
function message(body, ageSeconds = 1) {
  nextId += 1;
  return { id: `msg-${nextId}`, timestamp: new Date(Date.now() - ageSeconds * 1000), body, attempts: 1 };
}

/**
 * Miniflare with a worker bundle (by default the folder `worker package` wrote, the bytes a
 * customer deploys) and a recorder for its dead-letter queue.
 */
async function startWorker(bindings, bundle = packagedBundle) {
  const mf = new Miniflare({
    workers: [
      {
        name: "relay",
        modules: true,
        scriptPath: path.join(bundle, "index.js"),
        modulesRoot: bundle,
        modulesRules: [
          { type: "ESModule", include: ["**/*.js"] },
          { type: "CompiledWasm", include: ["**/*.wasm"] },
        ],
        compatibilityDate: WRANGLER.compatibility_date,
        bindings,
        queueConsumers: {
          [QUEUE]: {
            maxBatchSize: CONSUMER.max_batch_size,
            maxBatchTimeout: CONSUMER.max_batch_timeout,
            maxRetries: CONSUMER.max_retries,
            deadLetterQueue: DLQ,
          },
        },
        queueProducers: { [PRODUCER.binding]: PRODUCER.queue },
      },
      {
        name: "dlq-recorder",
        modules: true,
        script: `export default {
          async queue(batch, env) {
            for (const m of batch.messages) { await env.SEEN.put(String(m.body.object.key), JSON.stringify(m.body)); m.ack(); }
          },
        };`,
        compatibilityDate: "2026-01-01",
        queueConsumers: { [DLQ]: { maxBatchSize: 10, maxBatchTimeout: 0.2 } },
        kvNamespaces: ["SEEN"],
      },
    ],
  });
  await mf.ready;
  return mf;
}

async function runBatch(mf, messages, queue = QUEUE) {
  const worker = await mf.getWorker("relay");
  return worker.queue(queue, messages);
}

async function deadLettered(mf, key) {
  const kv = await mf.getKVNamespace("SEEN", "dlq-recorder");
  for (let i = 0; i < 100; i++) {
    const value = await kv.get(key);
    if (value !== null) return JSON.parse(value);
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

/** A stand-in receiver that misbehaves on purpose: what the real one never does by itself. */
async function misbehavingReceiver(behave) {
  const server = createHttpServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => behave(JSON.parse(body || "{}"), response));
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${port}`, close: () => { server.closeAllConnections(); server.close(); } };
}

function sorted(list) {
  return [...list].sort();
}

before(() => {
  assert.ok(existsSync(path.join(BUILD, "index.js")), "build the worker first (scripts/test does)");
  assert.ok(existsSync(RELAY_BIN), "build the receiver first (scripts/test does)");
});

test("wrangler.toml names the queues, binding and worker the code and the setup use", () => {
  assert.equal(WRANGLER.name, CONTRACT.worker.name);
  assert.equal(CONSUMER.max_retries, CONTRACT.worker.max_retries,
    "the receiver reads from max_retries how long a limited backlog is retried");
  assert.equal(QUEUE, CONTRACT.worker.queue);
  assert.equal(DLQ, CONTRACT.worker.dead_letter_queue);
  assert.equal(PRODUCER.queue, CONTRACT.worker.dead_letter_queue);
  assert.equal(PRODUCER.binding, CONTRACT.worker.dead_letter_binding);
  assert.ok(REPLAY, "the worker consumes its dead-letter queue, to replay it");
  assert.equal(REPLAY.dead_letter_queue, undefined, "a replayed message is never dead-lettered again");
  assert.deepEqual(WRANGLER.queues.consumers.map((c) => c.queue), [QUEUE, DLQ]);
  const known = new Set(Object.values(VARS));
  const unknown = Object.keys(WRANGLER.vars).filter((name) => !known.has(name));
  assert.deepEqual(unknown, [], "every [vars] entry is one the worker reads");
});

describe("the worker in workerd against the real receiver", () => {
  let receiver, mf, integration, packaged, packagedVars;

  // The packaged wrangler.toml's [vars], as `wrangler deploy` binds them from the customer's
  // folder; then the secret, as `wrangler secret put` stores it.
  const bindings = (overrides = {}) => ({
    ...packagedVars,
    [SECRET]: integration.secret,
    [VARS.allow_insecure]: "true",
    ...overrides,
  });

  beforeEach(async () => {
    await receiver?.stop();
    await mf?.dispose();
    receiver = new Receiver();
    await receiver.start();
    integration = receiver.cli("integrations", "create", "--provider", "r2", "--bucket", "uploads",
      "--suffix", ".pdf", "--max-object-bytes", "1000000", "--receiver-url", receiver.url);
    const folder = path.join(receiver.dir, "worker-package");
    packaged = receiver.cli("worker", "package", integration.id, "--out", folder, "--bundle", BUILD,
      "--receiver-url", receiver.url);
    packagedBundle = path.join(folder, "bundle");
    packagedVars = parseToml(readFileSync(path.join(folder, "wrangler.toml"), "utf8")).vars;
    mf = await startWorker(bindings());
  });

  test("the worker names its bundle; show tells the operator when it is not the one packaged", async () => {
    const health = await (await mf.dispatchFetch("http://worker/healthz")).json();
    assert.equal(health.bundle, packaged.bundle_version);
    assert.equal(receiver.cli("integrations", "show", integration.id).worker.reported, null, "no batch yet");

    await runBatch(mf, [message(notification("in/a.pdf"))]);
    let shown = receiver.cli("integrations", "show", integration.id).worker;
    assert.equal(shown.reported.bundle, packaged.bundle_version);
    assert.equal(shown.packaged.bundle, packaged.bundle_version);
    assert.equal(shown.mismatch, undefined);

    // The customer still runs the folder of an earlier release.
    const older = await startWorker(bindings({ [CONTRACT.worker.bundle_var]: "0.0.9+000000000000" }));
    try {
      await runBatch(older, [message(notification("in/b.pdf"))]);
    } finally {
      await older.dispose();
    }
    shown = receiver.cli("integrations", "show", integration.id).worker;
    assert.equal(shown.reported.bundle, "0.0.9+000000000000");
    assert.match(shown.mismatch, /has not deployed that folder/);
    assert.equal(receiver.jobs().length, 2, "the report never stands in the way of a batch");
  });

  test("the pasted setup configures the worker: receiver, integration and the integration's filters", async () => {
    // The developers' path: the worker built from a checkout, wrangler.toml's [vars] with the
    // section `integrations create` printed pasted over them.
    await mf.dispose();
    mf = await startWorker({
      ...WRANGLER.vars,
      ...parseToml(integration.wrangler_vars).vars,
      [SECRET]: integration.secret,
      [VARS.allow_insecure]: "true",
    }, BUILD);
    const health = await (await mf.dispatchFetch("http://worker/healthz")).json();
    assert.equal(health.integration_id, integration.id);
    assert.equal(health.receiver_host, "127.0.0.1");
    assert.equal(health.bundle, "source", "built from a checkout, not a packaged bundle");
    assert.equal(parseToml(integration.wrangler_vars).vars[VARS.key_suffixes], ".pdf");
    assert.ok(integration.setup.includes(`queues create ${QUEUE} --message-retention-period-secs`));
    assert.ok(integration.setup.includes(`queues create ${DLQ} --message-retention-period-secs`));
    assert.deepEqual(integration.notification_rules, [
      `npx wrangler r2 bucket notification create uploads --event-type object-create --queue ${QUEUE} --suffix=.pdf`,
    ]);
    // The worker applies the pasted suffix filter itself: a .txt never reaches the receiver.
    const txt = message(notification("in/notes.txt"));
    const result = await runBatch(mf, [txt]);
    assert.deepEqual(result.explicitAcks, [txt.id]);
    assert.equal(receiver.requests().length, 0);
  });

  after(async () => {
    await mf?.dispose();
    await receiver?.stop();
  });

  test("a batch becomes one signed request and exactly the expected jobs, all acked", async () => {
    const keys = ["in/a.pdf", "in/with space+plus%20.pdf", "in/résumé ü.pdf"];
    const messages = keys.map((key) => message(notification(key)));
    const result = await runBatch(mf, messages);

    assert.equal(result.outcome, "ok");
    assert.deepEqual(sorted(result.explicitAcks), sorted(messages.map((m) => m.id)));
    assert.deepEqual(result.retryMessages, []);
    assert.equal((await receiver.loggedRequests(1)).length, 1, "exactly one subrequest per batch");
    assert.deepEqual(sorted(receiver.jobs().map((j) => j.key)), sorted(keys));
    assert.deepEqual(sorted(receiver.jobs().map((j) => j.source_event_id)), sorted(messages.map((m) => m.id)));
  });

  test("a redelivered batch is acked as duplicates and adds no job", async () => {
    const messages = [message(notification("in/a.pdf")), message(notification("in/b.pdf"))];
    await runBatch(mf, messages);
    const again = await runBatch(mf, messages);
    assert.deepEqual(sorted(again.explicitAcks), sorted(messages.map((m) => m.id)));
    assert.equal(receiver.jobs().length, 2);
    assert.equal((await receiver.loggedRequests(2)).length, 2);
  });

  test("skipped and filtered messages are acked, rejected ones dead-lettered then acked", async () => {
    const accepted = message(notification("in/ok.pdf"));
    const skipped = message(notification("in/big.pdf", { size: 5_000_000 })); // the receiver's size limit
    const deleted = message(notification("in/old.pdf", { action: "DeleteObject" })); // the worker's filter
    const rejected = message(notification("in/other.pdf", { bucket: "someone-elses" }));
    const result = await runBatch(mf, [accepted, skipped, deleted, rejected]);

    assert.deepEqual(sorted(result.explicitAcks), sorted([accepted.id, skipped.id, deleted.id, rejected.id]));
    assert.deepEqual(result.retryMessages, []);
    assert.deepEqual(receiver.jobs().map((j) => j.key), ["in/ok.pdf"]);
    const dead = await deadLettered(mf, "in/other.pdf");
    assert.deepEqual(dead, rejected.body, "the original notification is in the dead-letter queue");
    assert.equal(await deadLettered(mf, "in/big.pdf"), null, "skipped events are not dead-lettered");
    // The worker filtered the delete itself: only three events reached the receiver.
    assert.equal((await receiver.loggedRequests(1))[0].events, 3);
  });

  test("a notification the worker cannot read reaches the dead-letter queue as it came, never acked unseen", async () => {
    // A key that is not text: whatever the action, the worker forwards it and the receiver names
    // it malformed_event; neither is dropped by the worker's own action filter.
    const put = message({ ...notification("in/x.pdf"), object: { key: 12345, size: 1, eTag: "ab" } });
    const deleted = message({ ...notification("in/y.pdf", { action: "DeleteObject" }), object: { key: 67890 } });
    const result = await runBatch(mf, [put, deleted]);

    assert.deepEqual(sorted(result.explicitAcks), sorted([put.id, deleted.id]));
    assert.deepEqual(result.retryMessages, []);
    assert.deepEqual(receiver.jobs(), []);
    assert.equal((await receiver.loggedRequests(1))[0].events, 2, "both reached the receiver");
    assert.deepEqual(await deadLettered(mf, "12345"), put.body);
    assert.deepEqual(await deadLettered(mf, "67890"), deleted.body);
  });

  test("with the receiver down every message is retried with a delay growing with its age, then accepted once", async () => {
    const young = message(notification("in/a.pdf"), 30);
    const old = message(notification("in/b.pdf"), 600);
    await receiver.stop();

    const down = await runBatch(mf, [young, old]);
    assert.deepEqual(down.explicitAcks, []);
    const delays = Object.fromEntries(down.retryMessages.map((r) => [r.msgId, r.delaySeconds]));
    assert.ok(delays[young.id] >= 30 && delays[young.id] < 60, `young: ${delays[young.id]}`);
    assert.ok(delays[old.id] >= 600 && delays[old.id] < 700, `old: ${delays[old.id]}`);

    await receiver.start();
    const back = await runBatch(mf, [young, old]);
    assert.deepEqual(sorted(back.explicitAcks), sorted([young.id, old.id]));
    const again = await runBatch(mf, [young, old]);
    assert.deepEqual(sorted(again.explicitAcks), sorted([young.id, old.id]));
    assert.deepEqual(sorted(receiver.jobs().map((j) => j.key)), ["in/a.pdf", "in/b.pdf"]);
  });

  test("on the Free plan the pasted vars cap every retry's wait so all fall inside a day", async () => {
    const free = receiver.cli("integrations", "create", "--provider", "r2", "--bucket", "uploads",
      "--cloudflare-plan", "free", "--receiver-url", receiver.url);
    const plans = Object.fromEntries(CONTRACT.worker.plans.map((p) => [p.plan, p]));
    const freeVars = parseToml(free.wrangler_vars).vars;
    assert.equal(freeVars[CONTRACT.worker.max_retry_delay_var], String(plans.free.max_retry_delay_seconds));
    const freeWorker = await startWorker({ ...bindings(), ...freeVars, [SECRET]: free.secret });
    try {
      await receiver.stop();
      const twoDaysOld = () => message(notification("in/old.pdf"), 2 * 86400);
      const onFree = await runBatch(freeWorker, [twoDaysOld()]);
      assert.deepEqual(onFree.retryMessages.map((r) => r.delaySeconds), [plans.free.max_retry_delay_seconds]);
      const onPaid = await runBatch(mf, [twoDaysOld()]);
      assert.deepEqual(onPaid.retryMessages.map((r) => r.delaySeconds), [plans.paid.max_retry_delay_seconds]);
    } finally {
      await freeWorker.dispose();
      await receiver.start();
    }
  });

  test("a receiver answering 503 gets every message retried, none acked", async () => {
    // The real receiver on AWS backends that cannot be reached answers 503 backend_unavailable.
    const unreachable = new Receiver({
      RELAY_BACKEND: "aws", RELAY_INTEGRATIONS_TABLE: "t", RELAY_LEDGER_TABLE: "l",
      RELAY_QUEUE_URL: "http://127.0.0.1:9/q", RELAY_MASTER_KEY_SECRET_ID: "s",
      AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test",
    });
    await unreachable.start();
    const worker503 = await startWorker(bindings({ [VARS.receiver_url]: unreachable.url }));
    try {
      const messages = [message(notification("in/a.pdf"), 120)];
      const result = await runBatch(worker503, messages);
      assert.deepEqual(result.explicitAcks, []);
      assert.equal(result.retryMessages.length, 1);
      assert.ok(result.retryMessages[0].delaySeconds >= 120);
      assert.equal((await unreachable.loggedRequests(1))[0].status, 503);
    } finally {
      await worker503.dispose();
      await unreachable.stop();
    }
  });

  test("a receiver that answers 500, too late, or about half the batch gets no unanswered message acked", async () => {
    const cases = {
      500: (_batch, response) => { response.writeHead(500); response.end("upstream exploded"); },
      hang: () => {}, // never answers
      half: (batch, response) => {
        const results = batch.events.slice(0, batch.events.length / 2)
          .map((event) => ({ id: event.id, outcome: "accepted", reason: null, job_id: "j" }));
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ results }));
      },
    };
    for (const [name, behave] of Object.entries(cases)) {
      const stub = await misbehavingReceiver(behave);
      const worker = await startWorker(bindings({ [VARS.receiver_url]: stub.url, [VARS.timeout]: "2" }));
      try {
        const messages = [0, 1, 2, 3].map((i) => message(notification(`in/${name}-${i}.pdf`)));
        const result = await runBatch(worker, messages);
        const acked = name === "half" ? messages.slice(0, 2).map((m) => m.id) : [];
        assert.deepEqual(sorted(result.explicitAcks), sorted(acked), name);
        assert.deepEqual(sorted(result.retryMessages.map((r) => r.msgId)),
          sorted(messages.map((m) => m.id).filter((id) => !acked.includes(id))), name);
      } finally {
        await worker.dispose();
        stub.close();
      }
    }
  });

  test("a burst of 10,000 events with the receiver restarting becomes exactly 10,000 jobs", async () => {
    // The queue's side is played here: every message not acked is delivered again, until all are.
    let pending = Array.from({ length: 10_000 }, (_, i) => message(notification(`burst/${i}.pdf`)));
    let deliveries = 0, restarts = 0, round = 0;
    let starting = Promise.resolve();
    while (pending.length > 0 && round < 50) {
      round += 1;
      const next = [];
      for (let at = 0; at < pending.length; at += 100) {
        const batch = pending.slice(at, at + 100);
        if (Math.random() < 0.1) {
          restarts += 1;
          await starting;
          await receiver.crash();
          starting = receiver.start(); // not awaited: some batches meet a receiver still starting
        }
        deliveries += batch.length;
        const result = await runBatch(mf, batch);
        const acked = new Set(result.explicitAcks);
        next.push(...batch.filter((m) => !acked.has(m.id)));
      }
      pending = next;
    }
    await starting;
    const keys = receiver.jobs().map((j) => j.key);
    const unique = new Set(keys);
    console.log(`burst: sent 10000, deliveries ${deliveries}, receiver restarts ${restarts}, ` +
      `jobs ${keys.length}, duplicates ${keys.length - unique.size}, lost ${10_000 - unique.size}`);
    assert.equal(pending.length, 0, "every message acked in the end");
    assert.equal(unique.size, 10_000);
    assert.equal(keys.length, 10_000, "no object twice");
  });

  test("a burst of 1,000 events over a limit of 60 a minute becomes exactly 1,000 jobs, none dead-lettered", async () => {
    receiver.cli("integrations", "set-limits", integration.id, "--max-jobs-per-minute", "60");
    await new Promise((r) => setTimeout(r, CONFIG_STALENESS_MS));
    // The queue's side is played on the receivers' compressed clock: a simulated minute lasts
    // one rate window. Each message is redelivered when the delay the worker asked for has
    // passed, its age is the simulated one the worker reads its backoff from, and one retried
    // more than max_retries times goes to the dead-letter queue, as Cloudflare's would.
    const SCALE = 60 / RATE_WINDOW_S;
    const started = Date.now();
    const simNow = () => started + (Date.now() - started) * SCALE;
    let waiting = Array.from({ length: 1000 }, (_, i) => ({
      body: notification(`limited/${String(i).padStart(4, "0")}.pdf`), sentAt: simNow(), due: 0, attempts: 1,
    }));
    let deadLettered = 0, deliveries = 0, maxAttempts = 1;
    while (waiting.length > 0) {
      const now = simNow();
      const due = waiting.filter((m) => m.due <= now).slice(0, CONSUMER.max_batch_size);
      if (due.length === 0) {
        const next = Math.min(...waiting.map((m) => m.due));
        await new Promise((r) => setTimeout(r, Math.max(1, (next - now) / SCALE)));
        continue;
      }
      const batch = due.map((m, i) => {
        nextId += 1;
        m.id = `burst-${nextId}-${i}`;
        return { id: m.id, timestamp: new Date(Date.now() - (now - m.sentAt)), body: m.body, attempts: m.attempts };
      });
      deliveries += batch.length;
      const result = await runBatch(mf, batch);
      const acked = new Set(result.explicitAcks);
      const delays = Object.fromEntries(result.retryMessages.map((r) => [r.msgId, r.delaySeconds]));
      const settled = new Set(due.filter((m) => acked.has(m.id)));
      for (const m of due.filter((m) => !acked.has(m.id))) {
        assert.ok(delays[m.id] >= 10, "a rate-limited message is retried with a delay");
        m.attempts += 1;
        maxAttempts = Math.max(maxAttempts, m.attempts);
        m.due = simNow() + delays[m.id] * 1000;
        if (m.attempts > CONSUMER.max_retries + 1) {
          deadLettered += 1;
          settled.add(m);
        }
      }
      waiting = waiting.filter((m) => !settled.has(m));
    }
    const elapsedWindows = (Date.now() - started) / 1000 / RATE_WINDOW_S;
    const jobs = receiver.jobs();
    const keys = new Set(jobs.map((j) => j.key));
    const perWindow = {};
    for (const job of jobs) {
      const window = Math.floor(Date.parse(job.received_at) / (RATE_WINDOW_S * 1000));
      perWindow[window] = (perWindow[window] ?? 0) + 1;
    }
    const usage = receiver.cli("integrations", "usage", integration.id, "--days", "1").totals;
    console.log(`limited burst: 1000 events, ${deliveries} deliveries, ${elapsedWindows.toFixed(1)} windows ` +
      `(simulated minutes), most attempts ${maxAttempts}, rate_limited ${usage["retry_later/rate_limited"]}`);
    assert.equal(deadLettered, 0, "the worker's backoff outlasts the backlog: nothing dead-lettered");
    assert.equal(jobs.length, 1000);
    assert.equal(keys.size, 1000, "every event one job, none twice");
    assert.ok(Math.max(...Object.values(perWindow)) <= 60, "no window made more than the limit");
    assert.ok(elapsedWindows >= Math.ceil(1000 / 60) - 2, "the burst took the time the limit implies");
    assert.ok(usage["retry_later/rate_limited"] > 0);
  });

  test("a wrong secret is retried and never acked", async () => {
    const other = receiver.cli("integrations", "create", "--provider", "r2", "--bucket", "uploads");
    const wrong = await startWorker(bindings({ [SECRET]: other.secret }));
    try {
      const result = await runBatch(wrong, [message(notification("in/a.pdf"))]);
      assert.deepEqual(result.explicitAcks, []);
      assert.equal(result.retryMessages.length, 1);
      assert.equal((await receiver.loggedRequests(1))[0].status, 401);
      assert.deepEqual(receiver.jobs(), []);
    } finally {
      await wrong.dispose();
    }
  });

  test("a paused integration is retried, then accepted after resume", async () => {
    receiver.cli("integrations", "pause", integration.id);
    const messages = [message(notification("in/a.pdf"))];
    const paused = await runBatch(mf, messages);
    assert.deepEqual(paused.explicitAcks, []);
    assert.equal(paused.retryMessages.length, 1);

    receiver.cli("integrations", "resume", integration.id);
    await new Promise((r) => setTimeout(r, CONFIG_STALENESS_MS)); // the receiver's staleness bound
    const resumed = await runBatch(mf, messages);
    assert.deepEqual(resumed.explicitAcks, [messages[0].id]);
    assert.deepEqual(receiver.jobs().map((j) => j.key), ["in/a.pdf"]);
  });

  test("a missing secret, a plain-http receiver or a URL that is none is a loud configuration error, never a drop", async () => {
    // The last is read by the runtime's own URL parser, the one fetch uses.
    for (const [overrides, problem] of [[{ [SECRET]: "" }, "is not set"],
      [{ [VARS.allow_insecure]: "false" }, "is not https"],
      [{ [VARS.receiver_url]: "relay.example.com" }, "relay.example.com is not a URL"]]) {
      const broken = await startWorker(bindings(overrides));
      try {
        const result = await runBatch(broken, [message(notification("in/a.pdf"))]);
        assert.deepEqual(result.explicitAcks, []);
        assert.equal(result.retryMessages.length, 1);
        const health = await broken.dispatchFetch("http://worker/healthz");
        assert.equal(health.status, 503);
        const { status, problems } = await health.json();
        assert.equal(status, "misconfigured");
        assert.equal(problems.length, 1, JSON.stringify(problems));
        assert.ok(problems[0].includes(problem), problems[0]);
      } finally {
        await broken.dispose();
      }
    }
    assert.equal(receiver.requests().length, 0, "nothing was sent");
  });

  test("dead letters are replayed once the cause is fixed: one job each, and the rejected-again kept", async () => {
    // The integration was in poll mode while the bucket notified: the receiver rejected the
    // events (mode_mismatch) and the worker dead-lettered them, with one for another bucket.
    receiver.cli("integrations", "set-mode", integration.id, "poll");
    await new Promise((r) => setTimeout(r, CONFIG_STALENESS_MS));
    const keys = ["in/r1.pdf", "in/r2.pdf", "in/r3.pdf"];
    const original = [...keys.map((key) => message(notification(key))),
      message(notification("in/theirs.pdf", { bucket: "someone-elses" }))];
    const first = await runBatch(mf, original);
    assert.deepEqual(sorted(first.explicitAcks), sorted(original.map((m) => m.id)));
    assert.deepEqual(receiver.jobs(), []);
    const dead = [];
    for (const key of [...keys, "in/theirs.pdf"]) {
      const body = await deadLettered(mf, key);
      assert.ok(body, `${key} is on the dead-letter queue`);
      dead.push(message(body, 3600));
    }

    // Fixed; the operator resumes the dead-letter queue's delivery, and the worker replays it.
    receiver.cli("integrations", "set-mode", integration.id, "event");
    await new Promise((r) => setTimeout(r, CONFIG_STALENESS_MS));
    const replayed = await runBatch(mf, dead, DLQ);
    const theirs = dead[3].id;
    assert.deepEqual(sorted(replayed.explicitAcks), sorted(dead.slice(0, 3).map((m) => m.id)));
    assert.deepEqual(replayed.retryMessages, [{ msgId: theirs, delaySeconds: 12 * 3600 }],
      "rejected again: kept on the dead-letter queue (retried every 12 h until the retention ends)");
    assert.deepEqual(sorted(receiver.jobs().map((j) => j.key)), keys);

    // Delivered again (the queue's at-least-once): no second job, the rejected one still kept.
    const again = await runBatch(mf, dead, DLQ);
    assert.deepEqual(sorted(again.explicitAcks), sorted(dead.slice(0, 3).map((m) => m.id)));
    assert.deepEqual(again.retryMessages.map((r) => r.msgId), [theirs]);
    assert.equal(receiver.jobs().length, 3, "exactly one job per object");
    assert.equal(await deadLettered(mf, "in/never.pdf"), null);

    // /healthz names the queues and shows the dead-letter queue's batches: delivery is on.
    const health = await (await mf.dispatchFetch("http://worker/healthz")).json();
    assert.equal(health.queues.events, QUEUE);
    assert.equal(health.queues.dead_letters, DLQ);
    assert.equal(health.queues.consumed_by_this_isolate[DLQ].batches, 2);
    assert.equal(health.queues.consumed_by_this_isolate[DLQ].messages, 8);
    assert.ok(health.queues.consumed_by_this_isolate[QUEUE].batches >= 1, "and the events queue's");
    assert.match(health.queues.dead_letter_replay, /^delivering/);
  });

  test("/healthz reports the configuration without the secret", async () => {
    const response = await mf.dispatchFetch("http://worker/healthz");
    const body = await response.text();
    assert.equal(response.status, 200);
    const health = JSON.parse(body);
    assert.equal(health.integration_id, integration.id);
    assert.equal(health.receiver_host, "127.0.0.1");
    assert.equal(health.secret_set, true);
    assert.ok(!body.includes(integration.secret.slice(6)), "the secret never appears");
    assert.deepEqual([health.queues.events, health.queues.dead_letters], [QUEUE, DLQ]);
  });
});

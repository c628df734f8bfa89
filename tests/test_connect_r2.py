"""The R2 setup through Cloudflare's API, checked against the real client.

The API cannot run here, so a local server answers in its v4 envelope and records every request
(tests/cloudflare_api.py). First the real `wrangler` (npm, pinned) runs the ordered setup
commands a packaged worker's README prints, against that server: every command must succeed, and
the requests it sends are the reference (tests/fixtures/wrangler-r2-setup.json keeps their
shapes; `RECORD_FIXTURES=1` rewrites it). Then `bucket-relay integrations connect-r2` runs
against a fresh server: its requests must match wrangler's field for field where they do the same
thing; its test notification is delivered to the worker it uploaded (those bytes and bindings,
in workerd) and reaches the real receiver; a second run changes nothing; a failure injected at
any step is reported by name and resumed by a re-run; the token and the secret appear nowhere."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cloudflare_api import CloudflareApi
from relay_contract import ROOT
from support import R2_ACCOUNT, RELAY_BIN

NODE_MODULES = ROOT / "tests" / "worker" / "node_modules"
NODE_BIN = NODE_MODULES / ".bin"
BUILD = ROOT / "worker" / "build"
FIXTURE = ROOT / "tests" / "fixtures" / "wrangler-r2-setup.json"
TOKEN = "cfut_0123456789abcdefghijklmnopqrstuvwxyzAB"


@pytest.fixture
def cloudflare():
    api = CloudflareApi(R2_ACCOUNT).start()
    yield api
    api.stop()


def customer_env(api, home):
    """A customer's shell: Node and the pinned wrangler, no cargo, wrangler pointed at the API."""
    home.mkdir(exist_ok=True)
    return {"PATH": f"{NODE_BIN}:/usr/bin:/bin", "HOME": str(home), "CI": "true",
            "WRANGLER_SEND_METRICS": "false", "npm_config_offline": "true",
            "CLOUDFLARE_API_BASE_URL": api.base_url, "CLOUDFLARE_API_TOKEN": TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": R2_ACCOUNT}


def packaged(receiver, tmp_path, *create_args):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, *create_args)
    out = tmp_path / "worker"
    receiver.cli("worker", "package", created["id"], "--out", str(out), "--bundle", str(BUILD),
                 "--receiver-url", "https://relay.example.com")
    # `npx wrangler` resolves to the project's wrangler, as after `npm install wrangler`.
    (out / "node_modules").symlink_to(NODE_MODULES)
    return created, out


def printed_commands(folder, secret):
    readme = (folder / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines()]
    commands = [line for line in lines if line.startswith(("npx wrangler", "printf"))]
    return [c.replace("<the whsec_… secret integrations create showed>", secret) for c in commands]


def run_wrangler_setup(api, folder, secret, home):
    """Each printed command, pasted into a non-interactive shell, as the customer would."""
    ran = []
    for command in printed_commands(folder, secret):
        before = len(api.requests)
        result = subprocess.run(["bash", "-c", command], cwd=folder, env=customer_env(api, home),
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Unknown argument" not in result.stderr, command
        ran.append((command, api.requests[before:]))
    return ran


def template(path, api):
    """A request path with the account and the ids it made in place of their values."""
    path = path.replace(R2_ACCOUNT, "{account}")
    return re.sub(r"/[0-9a-f]{32}(?=/|$)", "/{id}", path)


def reference(record, api):
    entry = {"method": record["method"], "path": template(record["path"], api),
             "query": sorted(record["query"])}
    if "body" in record:
        entry["body"] = shape_of(record["body"])
    if "parts" in record:
        entry["parts"] = sorted({p["content_type"] for p in record["parts"] if p["name"] != "metadata"})
        entry["metadata"] = sorted(record["metadata"])
    return entry


def shape_of(value):
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape_of(v) for v in value[:1]]
    return type(value).__name__


def writes(requests):
    return [r for r in requests if r["method"] != "GET"]


def find(requests, method, pattern):
    return [r for r in requests if r["method"] == method and re.search(pattern, r["path"])]


# --- the reference: the real wrangler -------------------------------------------------------

def test_the_printed_setup_runs_through_the_real_wrangler(receiver, cloudflare, tmp_path):
    created, folder = packaged(receiver, tmp_path, "--prefix", "in/", "--suffix", ".pdf", "--suffix=-final.csv")
    ran = run_wrangler_setup(cloudflare, folder, created["secret"], tmp_path / "home")
    commands = [command for command, _ in ran]
    assert any("queues create r2-events " in c for c in commands) and any(" deploy" in c for c in commands)

    # Everything a customer has after the paste: the queues, the worker with its secret and
    # consumers, and one rule per suffix.
    events, dead = cloudflare.queue_named("r2-events"), cloudflare.queue_named("r2-events-dlq")
    assert events["settings"]["message_retention_period"] == 1209600
    assert dead["settings"]["delivery_paused"] is True
    script = cloudflare.scripts["bucket-relay-worker"]
    assert script["secrets"]["EVENT_SOURCE_SECRET"] == created["secret"]
    assert [c["settings"]["max_concurrency"] for c in events["consumers"]] == [10]
    rules = cloudflare.rules[("uploads", events["queue_id"])]
    assert sorted(r["suffix"] for r in rules) == ["-final.csv", ".pdf"]

    # Writes in the order sent; reads (some concurrent) as the set of what was read.
    recorded = [{"command": re.sub(r"whsec_\S+'", "whsec_…'", command),
                 "reads": sorted({json.dumps(reference(r, cloudflare), sort_keys=True)
                                  for r in requests if r["method"] == "GET"}),
                 "writes": [reference(r, cloudflare) for r in writes(requests)]}
                for command, requests in ran]
    if os.environ.get("RECORD_FIXTURES"):
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(recorded, indent=1) + "\n")
    assert recorded == json.loads(FIXTURE.read_text()), \
        "the pinned wrangler sends other requests: RECORD_FIXTURES=1 pytest tests/test_connect_r2.py"


# --- connect-r2 -----------------------------------------------------------------------------

class Connecting:
    """`connect-r2` against the API, with published test notifications delivered to the
    uploaded worker in workerd (what Cloudflare does with a message on a consumed queue)."""

    def __init__(self, receiver, api, tmp_path):
        self.receiver, self.api, self.tmp_path = receiver, api, tmp_path
        self.delivered = []

    def env(self, **extra):
        return {**self.receiver.env, "CLOUDFLARE_API_BASE_URL": self.api.base_url,
                "CLOUDFLARE_API_TOKEN": TOKEN, **extra}

    def args(self, integration_id, *extra, receiver_url=None, account=R2_ACCOUNT):
        # The worker calls the local receiver over plain http, which only a local test may.
        receiver = ["--receiver-url", receiver_url] if receiver_url else \
            ["--receiver-url", self.receiver.url, "--allow-insecure-receiver"]
        return [str(RELAY_BIN), "--data-dir", str(self.receiver.data_dir), "--json", "integrations",
                "connect-r2", integration_id, "--cloudflare-account", account, "--bundle", str(BUILD),
                *receiver, "--wait", "60s", *extra]

    def run(self, integration_id, *extra, env=None, receiver_url=None):
        process = subprocess.Popen(self.args(integration_id, *extra, receiver_url=receiver_url),
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env or self.env())
        stop = threading.Event()
        courier = threading.Thread(target=self.deliver_published, args=(stop,), daemon=True)
        courier.start()
        try:
            stdout, stderr = process.communicate(timeout=180)
        finally:
            stop.set()
            courier.join()
        return process.returncode, stdout, stderr

    def deliver_published(self, stop):
        while not stop.is_set():
            for queue_id, messages in list(self.api.messages.items()):
                while messages:
                    body = messages.pop(0)
                    self.deliver(queue_id, body)
            time.sleep(0.1)

    def deliver(self, queue_id, published):
        script = self.api.scripts["bucket-relay-worker"]
        consumer = [c for c in self.api.queues[queue_id]["consumers"] if c["script"] == "bucket-relay-worker"]
        assert consumer, "a message on a queue the worker does not consume is not delivered"
        folder = self.tmp_path / f"upload-{len(self.delivered)}"
        folder.mkdir()
        modules = []
        for name, part in script["modules"].items():
            path = folder / name.replace("/", "_")
            path.write_bytes(part["bytes"])
            modules.append({"name": name, "content_type": part["content_type"], "path": str(path)})
        meta = script["metadata"]
        bindings = [b for b in meta["bindings"] if b["type"] != "secret_text"]
        bindings += [{"type": "secret_text", "name": n, "text": t} for n, t in script["secrets"].items()]
        upload = {"main_module": meta["main_module"], "compatibility_date": meta["compatibility_date"],
                  "bindings": bindings, "modules": modules, "queue": self.api.queues[queue_id]["queue_name"],
                  "messages": [published["body"]]}
        (folder / "upload.json").write_text(json.dumps(upload))
        result = subprocess.run(["node", str(ROOT / "tests" / "worker" / "deliver.mjs"), str(folder / "upload.json")],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "PATH": f"{NODE_BIN}:{os.environ['PATH']}"})
        shutil.rmtree(folder)
        self.delivered.append(result)


def state(api):
    events = api.queue_named("r2-events")
    return {
        "queues": sorted(q["queue_name"] for q in api.queues.values()),
        "retention": sorted(q["settings"]["message_retention_period"] for q in api.queues.values()),
        "dlq_paused": api.queue_named("r2-events-dlq")["settings"]["delivery_paused"],
        "scripts": sorted(api.scripts),
        "secret_names": sorted(api.scripts["bucket-relay-worker"]["secrets"]),
        "consumers": sorted((q["queue_name"], c["script"], json.dumps(c["settings"], sort_keys=True),
                             c.get("dead_letter_queue")) for q in api.queues.values() for c in q["consumers"]),
        "rules": sorted((r.get("prefix"), r.get("suffix")) for r in api.rules.get(("uploads", events["queue_id"]), [])),
    }


def test_connect_r2_sets_up_what_wrangler_does_with_the_same_requests(receiver, cloudflare, tmp_path):
    created, folder = packaged(receiver, tmp_path, "--prefix", "in/", "--suffix", ".pdf", "--suffix=-final.csv")
    run_wrangler_setup(cloudflare, folder, created["secret"], tmp_path / "home")
    by_wrangler, wrangler_state = list(cloudflare.requests), state(cloudflare)

    api = CloudflareApi(R2_ACCOUNT).start()
    try:
        connecting = Connecting(receiver, api, tmp_path)
        code, stdout, stderr = connecting.run(created["id"], "--no-test-event",
                                              receiver_url="https://relay.example.com")
        assert code == 0, stderr
        ours, our_state = list(api.requests), state(api)
    finally:
        api.stop()
    assert our_state == wrangler_state, "the same queues, worker, consumers and rules"

    def bodies(requests, method, pattern):
        return [r["body"] for r in find(requests, method, pattern)]

    # The same bodies, field for field, for every write both make.
    for method, pattern in [("POST", r"/queues$"), ("PATCH", r"/queues/[0-9a-f]+$"),
                            ("POST", r"/consumers$"), ("PUT", r"/configuration/queues/"),
                            ("POST", r"/subdomain$")]:
        assert bodies(ours, method, pattern) == bodies(by_wrangler, method, pattern), (method, pattern)
    # The worker upload: the same query, metadata fields, main module, module types and
    # bindings; the secret is a binding of the same upload rather than a second request.
    [theirs_put] = find(by_wrangler, "PUT", r"/workers/scripts/bucket-relay-worker$")
    [our_put] = find(ours, "PUT", r"/workers/scripts/bucket-relay-worker$")
    assert our_put["query"] == theirs_put["query"]
    assert sorted(our_put["metadata"]) == sorted(theirs_put["metadata"])
    for field in ("main_module", "compatibility_date", "compatibility_flags", "observability"):
        assert our_put["metadata"][field] == theirs_put["metadata"][field], field
    kinds = lambda put: sorted(p["content_type"] for p in put["parts"] if p["name"] != "metadata")
    assert kinds(our_put) == kinds(theirs_put) == ["application/javascript+module", "application/wasm"]
    [secret_put] = bodies(by_wrangler, "PUT", r"/secrets$")
    assert [b for b in our_put["metadata"]["bindings"] if b["type"] == "secret_text"] == [secret_put]
    assert [b for b in our_put["metadata"]["bindings"] if b["type"] != "secret_text"] == \
        theirs_put["metadata"]["bindings"]
    # Every request carries the token as a bearer, as wrangler's do.
    assert {r["authorization"] for r in ours} == {f"Bearer {TOKEN}"} == {r["authorization"] for r in by_wrangler}


def test_connect_r2_proves_the_path_and_a_second_run_changes_nothing(receiver, cloudflare, tmp_path):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--prefix", "in/", "--suffix", ".pdf")
    connecting = Connecting(receiver, cloudflare, tmp_path)
    code, stdout, stderr = connecting.run(created["id"])
    assert code == 0, f"{stdout}\n{stderr}\n{[d.stderr for d in connecting.delivered]}"
    first = json.loads(stdout)
    did = {step["step"]: step["did"] for step in first["steps"]}
    assert did["queue r2-events"] == did["queue r2-events-dlq"] == did["worker bucket-relay-worker"] == "created"
    assert did["notification rule uploads prefix=in/ suffix=.pdf"] == "created"
    # The test notification went queue → the uploaded worker (in workerd) → the receiver.
    assert len(connecting.delivered) == 1 and connecting.delivered[0].returncode == 0, connecting.delivered[0].stderr
    test = first["test_event"]
    assert (test["outcome"], test["reason"]) == ("skipped", "test_event")
    assert test["worker_bundle"] == first["bundle"]
    shown = receiver.cli("integrations", "show", created["id"])["worker"]
    assert shown["reported"]["bundle"] == shown["packaged"]["bundle"] == first["bundle"]
    assert "mismatch" not in shown
    assert receiver.jobs() == [], "a test event never becomes a job"
    after_first = state(cloudflare)

    cloudflare.clear()
    code, stdout, stderr = connecting.run(created["id"])
    assert code == 0, stderr
    second = json.loads(stdout)
    assert {step["did"] for step in second["steps"]} == {"unchanged"}, second["steps"]
    assert writes(cloudflare.requests) == find(cloudflare.requests, "POST", r"/messages$"), \
        "the second run writes nothing but its test event"
    assert state(cloudflare) == after_first

    # A rotated secret: the next run uploads the worker again, and the new secret verifies.
    rotated = receiver.cli("integrations", "rotate-secret", created["id"], "--now")
    code, stdout, stderr = connecting.run(created["id"])
    assert code == 0, stderr
    third = json.loads(stdout)
    assert {s["step"]: s["did"] for s in third["steps"]}["worker bucket-relay-worker"] == "updated"
    assert cloudflare.scripts["bucket-relay-worker"]["secrets"]["EVENT_SOURCE_SECRET"] == rotated["secret"]
    assert third["test_event"]["reason"] == "test_event"

    # The token and the secret: sent to the API only, never printed, logged or stored.
    for secret in (created["secret"], rotated["secret"]):
        for text in (stdout, stderr, receiver.logs()):
            assert TOKEN not in text and secret not in text
        for path in receiver.data_dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert TOKEN.encode() not in data and secret.encode() not in data, path


STEPS = [
    ("POST", r"/queues$", "queue r2-events"),
    ("PATCH", r"/queues/[0-9a-f]+$", "pause r2-events-dlq"),
    ("PUT", r"/workers/scripts/bucket-relay-worker$", "worker bucket-relay-worker"),
    ("POST", r"/subdomain$", "workers.dev route"),
    ("POST", r"/consumers$", "consumer r2-events"),
    ("PUT", r"/configuration/queues/", "notification rule uploads"),
    ("POST", r"/messages$", "test event"),
]


@pytest.mark.parametrize("method,pattern,step", STEPS, ids=[s[2] for s in STEPS])
def test_a_failed_step_is_named_and_a_rerun_resumes(receiver, cloudflare, tmp_path, method, pattern, step):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--suffix", ".pdf")
    connecting = Connecting(receiver, cloudflare, tmp_path)
    cloudflare.fail(method, pattern, 10013, "Injected: the service is having a moment", status=503)
    code, stdout, stderr = connecting.run(created["id"])
    assert code == 1
    assert f"step `{step}" in stderr and "Cloudflare error 10013: Injected" in stderr, stderr
    assert "Run the same command again to resume" in stderr
    assert TOKEN not in stdout + stderr and created["secret"] not in stdout + stderr

    code, stdout, stderr = connecting.run(created["id"])
    assert code == 0, stderr
    assert json.loads(stdout)["test_event"]["reason"] == "test_event"
    final = state(cloudflare)
    assert final["queues"] == ["r2-events", "r2-events-dlq"] and final["scripts"] == ["bucket-relay-worker"]
    assert len(final["consumers"]) == 2 and final["rules"] == [(None, ".pdf")]
    assert final["dlq_paused"] is True


def test_a_dry_run_sends_no_write_and_shows_no_secret(receiver, cloudflare, tmp_path):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--cloudflare-plan", "free")
    code, stdout, stderr = Connecting(receiver, cloudflare, tmp_path).run(created["id"], "--dry-run")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert {r["method"] for r in cloudflare.requests} == {"GET"}
    assert {step["did"] for step in report["steps"]} == {"would_change"}
    planned = [(p["method"], template(p["path"], cloudflare)) for p in report["planned"]]
    assert ("POST", "/accounts/{account}/queues") in planned
    assert ("PUT", "/accounts/{account}/workers/scripts/bucket-relay-worker") in planned
    assert created["secret"] not in stdout and "<redacted>" in stdout
    # The Free plan: queues keep messages 24 hours, and the worker's retries all fit in them.
    queues = [p["body"] for p in report["planned"] if p["path"].endswith("/queues")]
    assert [q["settings"]["message_retention_period"] for q in queues] == [86400, 86400]
    [upload] = [p["body"] for p in report["planned"] if p["path"].endswith("/bucket-relay-worker")]
    assert {"name": "MAX_RETRY_DELAY_SECONDS", "type": "plain_text", "text": "3600"} in upload["metadata"]["bindings"]


def test_bad_input_is_refused_before_any_request(receiver, cloudflare, tmp_path):
    r2 = receiver.create("r2", "uploads", "--account", R2_ACCOUNT)
    connecting = Connecting(receiver, cloudflare, tmp_path)
    cases = [
        ("../../user", {}, "32 lowercase hex digits"),
        ("0" * 32, {}, "not 00000000000000000000000000000000"),
        (R2_ACCOUNT, {"CLOUDFLARE_API_TOKEN": "tok\r\nX-Evil: 1"}, "is not one"),
        (R2_ACCOUNT, {"CLOUDFLARE_API_BASE_URL": "http://api.example.com/client/v4"}, "must be https"),
    ]
    for account, env, message in cases:
        result = subprocess.run(connecting.args(r2["id"], account=account), capture_output=True, text=True,
                                timeout=30, env=connecting.env(**env))
        assert result.returncode == 1 and message in result.stderr, (account, env, result.stderr)
    s3 = receiver.create("s3", "docs")
    result = subprocess.run(connecting.args(s3["id"]), capture_output=True, text=True, timeout=30,
                            env=connecting.env())
    assert result.returncode == 1 and "connect-r2 sets up an R2 bucket" in result.stderr
    assert cloudflare.requests == []


def test_disconnect_removes_rules_consumers_and_worker_and_queues_only_when_forced(receiver, cloudflare, tmp_path):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--suffix", ".pdf")
    connecting = Connecting(receiver, cloudflare, tmp_path)
    assert connecting.run(created["id"], "--no-test-event")[0] == 0
    disconnect = [str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "--json", "integrations", "disconnect-r2",
                  created["id"], "--cloudflare-account", R2_ACCOUNT]
    cloudflare.clear()
    result = subprocess.run(disconnect, capture_output=True, text=True, timeout=60, env=connecting.env())
    assert result.returncode == 0, result.stderr
    deletes = [template(r["path"], cloudflare) for r in writes(cloudflare.requests)]
    assert deletes[0].endswith("/configuration/queues/{id}"), "rules first"
    assert deletes[-1] == "/client/v4/accounts/{account}/workers/scripts/bucket-relay-worker", "the worker last"
    assert cloudflare.scripts == {} and all(q["consumers"] == [] for q in cloudflare.queues.values())
    assert len(cloudflare.queues) == 2, "the queues are kept: messages in them would be lost"
    forced = subprocess.run(disconnect + ["--force"], capture_output=True, text=True, timeout=60,
                            env=connecting.env())
    assert forced.returncode == 0, forced.stderr
    assert cloudflare.queues == {}


def test_an_existing_queue_keeps_its_id_and_gets_the_plans_retention(receiver, cloudflare, tmp_path):
    import requests
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT)
    # A queue the customer made earlier with Cloudflare's default retention (4 days).
    made = requests.post(f"{cloudflare.base_url}/accounts/{R2_ACCOUNT}/queues", json={"queue_name": "r2-events"},
                         headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()["result"]
    assert made["settings"]["message_retention_period"] == 345600
    code, stdout, stderr = Connecting(receiver, cloudflare, tmp_path).run(created["id"], "--no-test-event")
    assert code == 0, stderr
    step = next(s for s in json.loads(stdout)["steps"] if s["step"] == "queue r2-events")
    assert step["did"] == "updated" and "345600 s -> 1209600 s" in step["detail"]
    events = cloudflare.queue_named("r2-events")
    assert events["queue_id"] == made["queue_id"] and events["settings"]["message_retention_period"] == 1209600

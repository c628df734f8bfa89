"""The receiver as a Lambda behind a function URL: `cargo lambda watch` runs the real binary under
the Lambda runtime API, so requests go through `lambda_http` exactly as on AWS, against the AWS
backends on moto.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from relay_contract import ROOT
from role_policy import denied
from support import R2_ACCOUNT, Receiver, free_port, r2_event, s3_object_created, wait_for_config_change

FUNCTION = "bucket-relay"
BUILD_FAILED = re.compile(r"^error(\[E\d+\])?: |No space left on device", re.MULTILINE)


def log_tail(path, lines=40):
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def watch(tmp_path, env_vars, name, ready):
    """`cargo lambda watch` running the function with `env_vars` until the generator closes;
    yields its port once `ready(port)` is true."""
    cargo_lambda = shutil.which("cargo-lambda")
    if cargo_lambda is None:
        pytest.fail("cargo-lambda is missing: scripts/test installs it into the test venv")
    port = free_port()
    # Built as scripts/package-lambda builds the deployed zip: without the embedded backend and
    # the HTTP server.
    args = ["cargo", "lambda", "watch", "-p", FUNCTION, "--bin", FUNCTION, "--no-default-features",
            "-A", "127.0.0.1", "-P", str(port)]
    for key, value in env_vars.items():
        args += ["--env-var", f"{key}={value}"]
    log_path = tmp_path / f"{name}.log"
    log = open(log_path, "wb")
    # A target folder of its own: built without the default features, the binary would
    # otherwise replace target/debug/bucket-relay, which the other tests run as `serve`.
    target = str(ROOT / "target" / "lambda-watch")
    process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **env_vars, "CARGO_TARGET_DIR": target},
                               start_new_session=True)
    deadline = time.monotonic() + 600  # the first start may compile
    try:
        while time.monotonic() < deadline:
            try:
                if ready(port):
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None:
                pytest.fail(f"cargo lambda watch exited: {log_path.read_text()}")
            # A failed build leaves the watcher waiting for the next edit: say why now.
            if BUILD_FAILED.search(log_path.read_text(errors="replace")):
                pytest.fail(f"the function did not build: {log_tail(log_path)}")
            time.sleep(1)
        else:
            pytest.fail(f"the function never answered: {log_tail(log_path)}")
        yield port
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def function_base(port):
    """The function URL `cargo lambda watch` serves the function at."""
    return f"http://127.0.0.1:{port}/lambda-url/{FUNCTION}"


def function_ready(port):
    return requests.get(f"{function_base(port)}/healthz", timeout=30).status_code == 200


@pytest.fixture
def function_url(tmp_path, aws_stack, aws_proxy):
    for port in watch(tmp_path, aws_stack.receiver_env(aws_proxy.port), "lambda", function_ready):
        yield function_base(port)


def invoke(port, event):
    """Lambda's Invoke API, as EventBridge Scheduler calls it."""
    return requests.post(f"http://127.0.0.1:{port}/2015-03-31/functions/{FUNCTION}/invocations",
                         data=json.dumps(event), timeout=120)


SCHEDULER_EVENT = {"version": "0", "id": "0c3e7f5a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "detail-type": "Scheduled Event",
                   "source": "aws.scheduler", "account": "123456789012", "time": "2026-11-23T10:00:00Z",
                   "region": "us-east-1", "resources": [], "detail": {}}


def test_the_poller_function_runs_one_tick_per_scheduled_invocation(tmp_path, aws_stack, aws_proxy, moto):
    import boto3
    env = {**aws_stack.receiver_env(aws_proxy.port), "RELAY_LAMBDA_HANDLER": "poll"}
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log",
                   env={**env, "RELAY_R2_SECRET_ACCESS_KEY": "r2-secret-for-the-poller-test"})
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto}", region_name="us-east-1")
    s3.create_bucket(Bucket="uploads")
    r2 = cli.create("r2", "uploads", "--account", R2_ACCOUNT, "--mode", "poll")
    cli.cli("integrations", "set-source", r2["id"], "--r2-access-key-id", "R2KEYPOLLER")
    s3.put_object(Bucket="uploads", Key="a.pdf", Body=b"x")
    env["RELAY_R2_ENDPOINT_URL"] = f"http://127.0.0.1:{aws_proxy.port}"
    aws_proxy.reset_counts()  # what the operator's CLI did is not the poller's

    def ready(port):
        return invoke(port, SCHEDULER_EVENT).status_code == 200

    for port in watch(tmp_path, env, "poller", ready):
        # The readiness probe was the first tick; the next finds nothing new.
        assert [m["Body"] for m in aws_stack.messages()][0].count('"key":"a.pdf"') == 1
        assert invoke(port, SCHEDULER_EVENT).json() == {"integrations": 1, "jobs": 0}
        s3.put_object(Bucket="uploads", Key="b.pdf", Body=b"x")
        assert invoke(port, SCHEDULER_EVENT).json() == {"integrations": 1, "jobs": 1}
    assert aws_stack.depth() == 2
    # The watermark lives in the ledger table, next to the usage counts.
    cursor = aws_stack.dynamodb.get_item(TableName=aws_stack.ledger_table,
                                         Key={"job_id": {"S": f"cursor#{r2['id']}#poll"}})
    assert "Item" in cursor
    # Every call the poller made is one its role may make (moto does not enforce IAM).
    assert denied(aws_proxy.actions(), "poller", aws_stack) == []


def test_every_call_the_receiver_function_makes_is_one_its_role_allows(tmp_path, function_url, aws_stack,
                                                                        aws_proxy):
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=aws_stack.receiver_env(aws_proxy.port))
    r2 = cli.create("r2", "uploads")
    s3 = cli.create("s3", "docs")
    cli.url = function_url
    aws_proxy.reset_counts()  # the CLI's writes are the operator's, not the function's

    # New, redelivered, and redelivered again: after a batch of duplicates the function reads
    # the ledger before it claims (BatchGetItem). Then S3's one event at a time, the same way.
    events = [r2_event(f"in/{i}.pdf", message_id=f"m{i}") for i in range(20)]
    for _ in range(3):
        assert cli.post_batch(r2["id"], r2["secret"], events).status_code == 200
    event = s3_object_created("reports/a.pdf")
    for _ in range(3):
        assert cli.post_eventbridge(s3["id"], s3["secret"], event).status_code == 200
    made = aws_proxy.actions()
    assert ("dynamodb:BatchGetItem", aws_stack.ledger_table) in made, made
    assert denied(made, "receiver", aws_stack) == []


def test_the_function_url_turns_signed_requests_into_sqs_jobs(tmp_path, function_url, aws_stack, aws_proxy):
    # The CLI manages the same DynamoDB table the function reads.
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=aws_stack.receiver_env(aws_proxy.port))
    r2 = cli.create("r2", "uploads")
    s3 = cli.create("s3", "docs")
    cli.url = function_url  # send through the function URL instead of `serve`

    batch = cli.post_batch(r2["id"], r2["secret"], [r2_event("in/über plan+1.pdf", message_id="m1")])
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["outcome"] == "accepted"

    event = s3_object_created("reports/a b.pdf")
    first = cli.post_eventbridge(s3["id"], s3["secret"], event)
    again = cli.post_eventbridge(s3["id"], s3["secret"], event)
    assert (first.status_code, again.status_code) == (200, 200)
    assert [a.json()["results"][0]["outcome"] for a in (first, again)] == ["accepted", "duplicate"]

    paused = cli.cli("integrations", "pause", s3["id"])
    assert paused["status"] == "paused"
    wait_for_config_change()
    retry = cli.post_eventbridge(s3["id"], s3["secret"], s3_object_created("reports/c.pdf"))
    assert retry.status_code == 503 and retry.headers["retry-after"]

    wrong = cli.post_eventbridge(s3["id"], r2["secret"], event)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_secret"

    keys = sorted(m["Body"] for m in aws_stack.messages())
    assert len(keys) == 2
    assert any('"key":"in/über plan+1.pdf"' in body for body in keys)


def test_every_log_line_of_an_invocation_carries_its_lambda_request_id(tmp_path, function_url, aws_stack, aws_proxy):
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=aws_stack.receiver_env(aws_proxy.port))
    s3 = cli.create("s3", "docs", "--suffix", ".pdf")
    cli.url = function_url
    assert cli.post_eventbridge(s3["id"], s3["secret"], s3_object_created("a.txt")).status_code == 200
    assert cli.post_eventbridge(s3["id"], "whsec_wrong", s3_object_created("b.pdf")).status_code == 401

    lines = []
    for text in (tmp_path / "lambda.log").read_text(errors="replace").splitlines():
        try:  # the emulator's own lines are plain text; the function's are JSON
            lines.append(json.loads(text[text.index("{"):]))
        except ValueError:
            continue
    ours = [line for line in lines if line.get("message") in ("request", "event_skipped", "auth_failed")]
    assert {line["message"] for line in ours} >= {"request", "event_skipped", "auth_failed"}, lines
    request_ids = {line["span"]["requestId"] for line in ours}
    assert len(request_ids) == 2 and all(request_ids), "one id per invocation, on every line of it"


def test_the_lambda_build_leaves_the_operators_commands_out_and_says_so(tmp_path, function_url, aws_stack):
    # The binary `cargo lambda watch` built for the fixture, as the Lambda package is built: no
    # embedded backend, no HTTP server, no operator commands (they call Cloudflare or a receiver).
    binary = ROOT / "target" / "lambda-watch" / "debug" / FUNCTION
    env = {**os.environ, **aws_stack.receiver_env(4)}
    for args in (["integrations", "connect-r2", "int_x", "--cloudflare-account", "0" * 32],
                 ["integrations", "test", "int_x", "--receiver-url", "https://example.com"]):
        result = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "leaves the operator's commands out" in result.stderr, result.stderr


def test_the_function_writes_its_waiting_usage_counts_on_the_sigterm_before_shutdown(tmp_path, aws_stack, aws_proxy):
    # Counts wait in memory (one write per interval, not per request). Lambda sends SIGTERM
    # before it shuts an environment down because the function registers an internal
    # extension; the counts still waiting are written then.
    env = {**aws_stack.receiver_env(aws_proxy.port), "RELAY_USAGE_FLUSH": "60s"}
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=aws_stack.receiver_env(aws_proxy.port))
    s3 = cli.create("s3", "docs")

    function = watch(tmp_path, env, "lambda-usage", function_ready)
    cli.url = function_base(next(function))
    aws_proxy.reset_counts()
    for name in ("a.pdf", "b.pdf"):
        answer = cli.post_eventbridge(s3["id"], s3["secret"], s3_object_created(name))
        assert answer.json()["results"][0]["outcome"] == "accepted"
    assert aws_proxy.count("dynamodb", "UpdateItem") == 0, "no usage write per request"
    assert cli.cli("integrations", "usage", s3["id"], "--days", "1")["totals"] == {}
    function.close()  # SIGTERM to the watcher and the function
    assert aws_proxy.count("dynamodb", "UpdateItem") == 1
    assert cli.cli("integrations", "usage", s3["id"], "--days", "1")["totals"] == {"accepted": 2}

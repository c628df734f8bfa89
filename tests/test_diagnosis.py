"""The runbook's commands against the real receiver: `integrations test --receiver-url` (the test
event, each named failure), `events why`, `integrations show`'s last events, and the replays of
the EventBridge and ingest dead-letter queues (moto)."""

import json
import shutil
import subprocess
import time

from support import RELAY_BIN, free_port, r2_event, s3_object_created, wait_for_config_change


def event_test(receiver, integration_id, *extra, url=None, stdin=None, data_dir=None):
    """`integrations test ID --receiver-url URL --json`: (exit code, the JSON report)."""
    result = subprocess.run(
        [str(RELAY_BIN), "--data-dir", str(data_dir or receiver.data_dir), "--json", "integrations", "test",
         integration_id, "--receiver-url", url or receiver.url, *extra],
        capture_output=True, text=True, timeout=60, env=receiver.env, input=stdin)
    return result.returncode, json.loads(result.stdout)


def failed_step(report):
    return next((step["step"] for step in report["steps"] if not step["ok"]), None)


def test_the_test_event_passes_end_to_end_and_makes_no_job(receiver):
    r2 = receiver.create("r2", "uploads", "--suffix", ".pdf")
    s3 = receiver.create("s3", "docs", "--account", "123456789012")
    for created, sender in ((r2, "worker"), (s3, "eventbridge")):
        code, report = event_test(receiver, created["id"])
        assert code == 0, report
        assert report["ok"] and report["cause"] is None
        assert report["sent_as"] == sender
        assert [s["step"] for s in report["steps"]] == \
            ["dns", "connect", "http", "auth", "integration", "decision", "backends"]
    assert receiver.jobs() == []
    # The receiver logged it as what it is, and counts it apart from real skips.
    skipped = [line for line in receiver.log_lines() if line.get("message") == "event_skipped"]
    assert {line["reason"] for line in skipped} == {"test_event"}
    usage = receiver.cli("integrations", "usage", r2["id"])
    assert usage["totals"] == {"skipped/test_event": 1}


def test_each_failure_of_the_test_event_is_named(receiver, tmp_path):
    created = receiver.create("r2", "uploads")
    iid = created["id"]
    closed = free_port()
    cases = [
        ((), f"http://127.0.0.1:{closed}", None, "connect", "connect"),
        ((), "http://relay.invalid", None, "dns", "dns"),
        ((), receiver.url.replace("http://", "https://"), None, "tls", "tls"),
        ((), receiver.url + "/not-the-base", None, "not_found", "http"),
        (("--bucket", "someone-elses"), None, None, "bucket_mismatch", "decision"),
        (("--account", "another"), None, None, None, None),  # the integration names no account
        (("--secret-stdin",), None, "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "invalid_secret", "auth"),
    ]
    for extra, url, stdin, cause, step in cases:
        code, report = event_test(receiver, iid, *extra, url=url, stdin=stdin)
        assert report["cause"] == cause, (extra, url, report)
        assert (code == 0) == (cause is None)
        assert failed_step(report) == step, report
        if cause:
            assert report["hint"], report
            assert "whsec_" not in json.dumps(report), "the secret never shows"

    receiver.cli("integrations", "set-mode", iid, "poll")
    wait_for_config_change()
    code, report = event_test(receiver, iid)
    assert (code, report["cause"], failed_step(report)) == (1, "mode_mismatch", "decision")
    receiver.cli("integrations", "set-mode", iid, "event")
    receiver.cli("integrations", "pause", iid)
    wait_for_config_change()
    code, report = event_test(receiver, iid)
    assert (code, report["cause"], failed_step(report)) == (1, "paused", "decision")
    receiver.cli("integrations", "resume", iid)

    # A CLI whose store has an integration the running receiver does not know (another data dir
    # with the same master key).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(receiver.data_dir / "master.key", elsewhere / "master.key")
    other = subprocess.run([str(RELAY_BIN), "--data-dir", str(elsewhere), "--json", "integrations", "create",
                            "--provider", "r2", "--bucket", "uploads"], capture_output=True, text=True, check=True)
    code, report = event_test(receiver, json.loads(other.stdout)["id"], data_dir=elsewhere)
    assert (code, report["cause"], failed_step(report)) == (1, "unknown_integration", "integration")
    assert receiver.jobs() == []


def why(receiver, iid, key):
    return receiver.cli("events", "why", "--integration", iid, "--key", key)


def check_why(relay, iid, secret, post):
    """Accepted, duplicate, skipped and rejected objects, and one never seen, through `why`."""
    post(iid, secret, "in/new.pdf")
    post(iid, secret, "in/again.pdf")
    post(iid, secret, "in/again.pdf")
    post(iid, secret, "in/notes.txt")
    post(iid, secret, "in/elsewhere.pdf", bucket="someone-elses")

    new = why(relay, iid, "in/new.pdf")
    assert new["seen"] and new["last"]["outcome"] == "accepted"
    assert new["enqueued"]["job_id"] == new["last"]["job_id"]
    # A redelivery repeats the job: the key's last word stays the job (a duplicate writes no
    # history of its own; it counts in the usage and as the last duplicate).
    again = why(relay, iid, "in/again.pdf")
    assert (again["last"]["outcome"], again["last"]["reason"]) == ("accepted", None)
    assert again["enqueued"]["job_id"] == again["last"]["job_id"]
    notes = why(relay, iid, "in/notes.txt")
    assert (notes["last"]["outcome"], notes["last"]["reason"], notes["enqueued"]) == \
        ("skipped", "suffix_filtered", None)
    elsewhere = why(relay, iid, "in/elsewhere.pdf")
    assert (elsewhere["last"]["outcome"], elsewhere["last"]["reason"]) == ("rejected", "bucket_mismatch")
    never = why(relay, iid, "in/never.pdf")
    assert (never["seen"], never["last"], never["enqueued"]) == (False, None, None)

    # The last event per outcome: on DynamoDB a process writes each outcome's at most every
    # 10 s (the first always), so there the last accepted shown is the first of the two. The
    # embedded backend writes them at most once a second: another process (this CLI) sees the
    # last within a second or so.
    aws = relay.env.get("RELAY_BACKEND") == "aws"
    accepted = "in/new.pdf" if aws else "in/again.pdf"
    deadline = time.monotonic() + 3
    shown = relay.cli("integrations", "show", iid)["last_seen"]
    while not aws and shown["accepted"]["key"] != accepted and time.monotonic() < deadline:
        time.sleep(0.1)
        shown = relay.cli("integrations", "show", iid)["last_seen"]
    assert {outcome: seen["key"] for outcome, seen in shown.items()} == {
        "accepted": accepted, "duplicate": "in/again.pdf", "skipped": "in/notes.txt",
        "rejected": "in/elsewhere.pdf"}
    assert shown["rejected"]["reason"] == "bucket_mismatch"


def test_events_why_and_show_answer_from_the_embedded_ledger(receiver):
    created = receiver.create("r2", "uploads", "--suffix", ".pdf")

    def post(iid, secret, key, bucket="uploads"):
        assert receiver.post_batch(iid, secret, [r2_event(key, bucket=bucket)]).status_code == 200

    check_why(receiver, created["id"], created["secret"], post)
    text = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "events", "why",
                           "--integration", created["id"], "--key", "in/notes.txt"],
                          capture_output=True, text=True, check=True).stdout
    assert "suffix_filtered" in text and "--suffix" in text, text


def test_events_why_and_show_answer_from_dynamodb(aws_receiver):
    created = aws_receiver.create("s3", "docs", "--suffix", ".pdf")

    def post(iid, secret, key, bucket="docs"):
        event = s3_object_created(key, bucket=bucket, version_id=f"v-{key}")
        assert aws_receiver.post_eventbridge(iid, secret, event).status_code in (200, 422)

    check_why(aws_receiver, created["id"], created["secret"], post)


def test_a_test_event_names_an_unreachable_queue(aws_receiver, aws_proxy):
    created = aws_receiver.create("s3", "docs")
    aws_proxy.fail("sqs")
    try:
        code, report = event_test(aws_receiver, created["id"])
    finally:
        aws_proxy.heal()
    assert (code, report["cause"], failed_step(report)) == (1, "backend_unavailable", "backends")
    code, report = event_test(aws_receiver, created["id"])
    assert code == 0, report


def dead_letter(stack, queue_url, events):
    """Puts events on a queue as EventBridge dead-letters them: the event as the body, the
    failure in message attributes."""
    for i in range(0, len(events), 10):
        stack.sqs.send_message_batch(QueueUrl=queue_url, Entries=[{
            "Id": str(n), "MessageBody": json.dumps(event),
            "MessageAttributes": {
                "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
                "ERROR_MESSAGE": {"DataType": "String", "StringValue": "Unable to invoke ApiDestination endpoint"},
                "RETRY_ATTEMPTS": {"DataType": "Number", "StringValue": "185"},
            }} for n, event in enumerate(events[i:i + 10])])


def replay(relay, *args, check=True):
    return relay.cli("replay", *args, check=check)


def test_events_dead_lettered_by_eventbridge_are_replayed_once(aws_receiver, aws_stack):
    from test_aws import drain
    created = aws_receiver.create("s3", "docs")
    iid = created["id"]
    # The receiver was down: EventBridge gave up on 50 events and dead-lettered them.
    dlq = aws_stack.sqs.create_queue(QueueName="bucket-relay-docs-dlq")["QueueUrl"]
    events = [s3_object_created(f"in/{i}.pdf", version_id=f"v{i}") for i in range(50)]
    dead_letter(aws_stack, dlq, events)

    dry = replay(aws_receiver, "eventbridge", "--dlq-url", dlq, "--integration", iid, "--dry-run")
    assert (dry["messages"], dry["outcomes"], dry["deleted"]) == (50, {"accepted": 50}, 0)
    assert aws_stack.depth(dlq) == 50 and aws_stack.depth() == 0, "a dry run changes nothing"
    visible = aws_stack.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "50", "and leaves every message visible"

    done = replay(aws_receiver, "eventbridge", "--dlq-url", dlq, "--integration", iid)
    assert (done["messages"], done["outcomes"], done["deleted"], done["kept"]) == (50, {"accepted": 50}, 50, 0)
    assert aws_stack.depth(dlq) == 0
    jobs = drain(aws_stack)
    assert sorted(job["key"] for job in jobs) == sorted(f"in/{i}.pdf" for i in range(50))

    # The same events dead-lettered again (a second outage), and one for a bucket the
    # integration does not have: no new job, and the rejected one stays for a person to see.
    dead_letter(aws_stack, dlq, events + [s3_object_created("in/x.pdf", bucket="someone-elses")])
    again = replay(aws_receiver, "eventbridge", "--dlq-url", dlq, "--integration", iid, check=False)
    assert again.returncode == 1 and "1 messages kept" in again.stderr
    assert drain(aws_stack) == []
    assert aws_stack.depth(dlq) == 1
    kept = aws_stack.messages(dlq)
    assert json.loads(kept[0]["Body"])["detail"]["bucket"]["name"] == "someone-elses"


def test_jobs_dead_lettered_by_the_pipeline_move_back_to_the_ingest_queue(fifo_receiver, fifo_stack):
    relay, stack = fifo_receiver, fifo_stack
    created = relay.create("r2", "uploads")
    response = relay.post_batch(created["id"], created["secret"], [r2_event(f"in/{i}.pdf") for i in range(3)])
    assert response.status_code == 200
    # The pipeline failed on them until SQS moved them to the dead-letter queue.
    failed = stack.messages(stack.queue_url)
    for message in failed:
        stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=message["Body"],
                               MessageAttributes=message["MessageAttributes"],
                               MessageGroupId=message["Attributes"]["MessageGroupId"],
                               MessageDeduplicationId=json.loads(message["Body"])["job_id"])
        stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert stack.depth() == 0 and stack.depth(stack.dlq_url) == 3

    dry = replay(relay, "ingest", "--dlq-url", stack.dlq_url, "--dry-run")
    assert (dry["messages"], dry["deleted"]) == (3, 0) and stack.depth(stack.dlq_url) == 3
    moved = replay(relay, "ingest", "--dlq-url", stack.dlq_url)
    assert (moved["outcomes"], moved["deleted"], moved["kept"]) == ({"moved": 3}, 3, 0)
    assert stack.depth(stack.dlq_url) == 0
    back = stack.messages(stack.queue_url)
    assert sorted(json.loads(m["Body"])["key"] for m in back) == ["in/0.pdf", "in/1.pdf", "in/2.pdf"]
    assert all(m["MessageAttributes"]["integration_id"]["StringValue"] == created["id"] for m in back)


def test_one_dead_letter_that_is_no_ingest_job_is_kept_by_name_and_the_rest_move(fifo_receiver, fifo_stack):
    relay, stack = fifo_receiver, fifo_stack
    created = relay.create("r2", "uploads")
    assert relay.post_batch(created["id"], created["secret"], [r2_event(f"in/{i}.pdf") for i in range(2)]).status_code == 200
    for message in stack.messages(stack.queue_url):
        stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=message["Body"],
                               MessageAttributes=message["MessageAttributes"],
                               MessageGroupId=message["Attributes"]["MessageGroupId"],
                               MessageDeduplicationId=json.loads(message["Body"])["job_id"])
        stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    bad = stack.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody="not a job", MessageGroupId="g",
                                 MessageDeduplicationId="bad-1")["MessageId"]

    result = replay(relay, "ingest", "--dlq-url", stack.dlq_url, check=False)
    assert result.returncode == 1 and "1 jobs could not be moved" in result.stderr, result.stderr
    assert sorted(json.loads(m["Body"])["key"] for m in stack.messages(stack.queue_url)) == ["in/0.pdf", "in/1.pdf"]
    kept = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"')]
    assert any(line.get("message") == "replay_kept" and line.get("id") == bad
               and line.get("outcome") == "kept/not_an_ingest_job" for line in kept), result.stderr
    # The bad one is visible again at once (not hidden for five minutes), and alone on the queue.
    again = stack.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["MessageId"] for m in again.get("Messages", [])] == [bad]

"""The receiver on its AWS backends (DynamoDB, SQS, Secrets Manager), against the moto emulator.

The receiver binary runs `serve --backend aws` with AWS_ENDPOINT_URL pointing at a counting proxy
in front of moto, so tests can count its API calls and take "AWS" away and back.
"""

import json
import subprocess
import threading

import pytest
import requests

from support import (R2_ACCOUNT, RELAY_BIN, AwsStack, Receiver, r2_event, s3_object_created,
                     signed_headers, valid_job, wait_for_config_change)


def bodies(messages):
    return [json.loads(m["Body"]) for m in messages]


def results(response):
    return response.json()["results"]


def test_accepted_events_land_on_sqs_exactly_once_with_attributes(aws_receiver, aws_stack):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"in/{name}.pdf") for name in ("a", "b c", "d+e")]
    first = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in results(first)] == ["accepted"] * 3
    again = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in results(again)] == ["duplicate"] * 3

    messages = aws_stack.messages()
    assert sorted(j["key"] for j in bodies(messages)) == ["in/a.pdf", "in/b c.pdf", "in/d+e.pdf"]
    job = bodies(messages)[0]
    assert job["schema"] == "ingest-job/v2" and job["integration_id"] == created["id"]
    attributes = messages[0]["MessageAttributes"]
    assert attributes["integration_id"]["StringValue"] == created["id"]
    assert attributes["provider"]["StringValue"] == "r2"
    assert {r["job_id"] for r in results(first)} == {j["job_id"] for j in bodies(messages)}


def test_concurrent_identical_deliveries_yield_exactly_one_job(aws_receiver, aws_stack):
    created = aws_receiver.create("s3", "docs")
    event = s3_object_created("race/one.pdf")
    answers, lock = [], threading.Lock()

    def deliver():
        response = aws_receiver.post_eventbridge(created["id"], created["secret"], event)
        with lock:
            answers.append((response.status_code, results(response)[0]["outcome"], results(response)[0]["reason"]))

    threads = [threading.Thread(target=deliver) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    outcomes = [outcome for _, outcome, _ in answers]
    assert outcomes.count("accepted") == 1, answers
    # The others saw the winner's claim, finished (duplicate) or still in flight (retry later).
    assert all(a in {(200, "duplicate", "duplicate"), (503, "retry_later", "in_flight"), (200, "accepted", None)}
               for a in answers), answers
    # EventBridge retries the 503s; by then they are duplicates.
    retry = aws_receiver.post_eventbridge(created["id"], created["secret"], event)
    assert results(retry)[0]["outcome"] == "duplicate"
    assert len(aws_stack.messages()) == 1


def test_a_fifo_queue_gets_group_and_deduplication_ids(fifo_receiver, fifo_stack):
    created = fifo_receiver.create("r2", "uploads")
    response = fifo_receiver.post_batch(created["id"], created["secret"], [r2_event("in/a.pdf")])
    (message,) = fifo_stack.messages()
    assert message["Attributes"]["MessageGroupId"] == created["id"]
    assert message["Attributes"]["MessageDeduplicationId"] == results(response)[0]["job_id"]


def test_a_batch_s_sends_go_out_at_once_to_a_standard_queue(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"in/{i:03d}.pdf", message_id=f"m{i}") for i in range(100)]
    aws_proxy.reset_counts()
    answer = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in results(answer)] == ["accepted"] * 100
    # Ten SendMessageBatch calls, not one after another: the batch waits one round trip.
    assert aws_proxy.count("sqs", "SendMessageBatch") == 10
    assert aws_proxy.most_in_flight["SendMessageBatch"] > 1
    # Its claims: sixteen at once, as many as a request has ever had in flight.
    assert aws_proxy.most_in_flight["PutItem"] <= 16
    assert sorted(j["key"] for j in bodies(aws_stack.messages())) == [f"in/{i:03d}.pdf" for i in range(100)]


def test_a_fifo_queue_gets_a_batch_s_jobs_in_its_order(fifo_receiver, fifo_stack, aws_proxy):
    created = fifo_receiver.create("r2", "uploads")
    events = [r2_event(f"in/{i:03d}.pdf", message_id=f"m{i}") for i in range(40)]
    aws_proxy.reset_counts()
    fifo_receiver.post_batch(created["id"], created["secret"], events)
    assert aws_proxy.most_in_flight["SendMessageBatch"] == 1
    assert drained_keys(fifo_stack) == [f"in/{i:03d}.pdf" for i in range(40)]


def drained_keys(stack):
    """The keys of the jobs on `stack`'s queue, received and deleted. A FIFO queue's are one group
    (the integration), so SQS hands them out in the order they were sent, the next ten once the
    last ten are deleted."""
    keys = []
    while batch := stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=0).get("Messages", []):
        keys += [json.loads(m["Body"])["key"] for m in batch]
        stack.sqs.delete_message_batch(QueueUrl=stack.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return keys


def test_a_job_the_pipeline_keeps_failing_moves_to_the_dlq(aws_receiver, aws_stack):
    created = aws_receiver.create("r2", "uploads")
    aws_receiver.post_batch(created["id"], created["secret"], [r2_event("in/poison.pdf")])
    # The pipeline receives it and never deletes it: after maxReceiveCount (2) it is redriven.
    for _ in range(3):
        aws_stack.sqs.receive_message(QueueUrl=aws_stack.queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
    (dead,) = aws_stack.messages(aws_stack.dlq_url)
    assert json.loads(dead["Body"])["key"] == "in/poison.pdf"
    assert aws_stack.messages() == []


def test_with_aws_down_the_receiver_answers_503_and_loses_nothing(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("s3", "docs")
    event = s3_object_created("outage/a.pdf")
    aws_proxy.stop()
    try:
        down = aws_receiver.post_eventbridge(created["id"], created["secret"], event)
        assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
        assert down.json()["error"] == "backend_unavailable"
        batch = aws_receiver.post_batch(created["id"], created["secret"], [r2_event("x.pdf")])
        assert batch.status_code == 503
    finally:
        aws_proxy.start()
    back = aws_receiver.post_eventbridge(created["id"], created["secret"], event)
    assert back.status_code == 200 and results(back)[0]["outcome"] == "accepted"
    assert [j["key"] for j in bodies(aws_stack.messages())] == ["outage/a.pdf"]
    assert any(line.get("message") == "backend_unavailable" for line in aws_receiver.log_lines())


def test_an_sqs_outage_is_retry_later_and_the_retry_is_accepted_not_duplicate(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event("in/a.pdf"), r2_event("in/b.pdf")]
    aws_proxy.fail("sqs")
    down = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert down.status_code == 200
    assert [(r["outcome"], r["reason"]) for r in results(down)] == [("retry_later", "backend_unavailable")] * 2
    aws_proxy.heal()
    back = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in results(back)] == ["accepted", "accepted"]
    assert len(aws_stack.messages()) == 2


def test_the_master_key_is_read_once_per_cold_start(aws_receiver, aws_proxy):
    created = aws_receiver.create("r2", "uploads")  # the CLI is its own process: one read
    aws_proxy.reset_counts()
    for i in range(5):
        aws_receiver.post_batch(created["id"], created["secret"], [r2_event(f"in/{i}.pdf")])
    assert aws_proxy.count("secretsmanager", "GetSecretValue") == 1
    aws_receiver.restart()
    aws_receiver.post_batch(created["id"], created["secret"], [r2_event("in/after.pdf")])
    aws_receiver.post_batch(created["id"], created["secret"], [r2_event("in/after2.pdf")])
    assert aws_proxy.count("secretsmanager", "GetSecretValue") == 2


def test_a_missing_master_key_answers_503_without_a_panic(aws_receiver, aws_stack):
    created = aws_receiver.create("r2", "uploads")
    aws_stack.secrets.delete_secret(SecretId=aws_stack.secret_id, ForceDeleteWithoutRecovery=True)
    aws_receiver.restart()
    response = aws_receiver.post_batch(created["id"], created["secret"], [r2_event("in/a.pdf")])
    assert response.status_code == 503 and response.json()["error"] == "backend_unavailable"
    assert aws_receiver.process.poll() is None, "the receiver keeps running"
    errors = [l for l in aws_receiver.log_lines() if l.get("message") == "backend_unavailable"]
    assert errors and errors[-1]["backend"] == "secretsmanager"


def test_100_accepted_events_cost_10_sqs_calls(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    aws_receiver.post_batch(created["id"], created["secret"], [r2_event("warm.pdf")])  # key, integration
    aws_proxy.reset_counts()
    events = [r2_event(f"in/{i:03}.pdf") for i in range(100)]
    response = aws_receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in results(response)] == ["accepted"] * 100
    assert aws_proxy.count("sqs") == 10
    assert aws_proxy.count("sqs", "SendMessageBatch") == 10
    assert len(aws_stack.messages()) == 101


def test_integrations_cli_and_usage_work_against_dynamodb(aws_receiver):
    created = aws_receiver.create("r2", "uploads", "--suffix", ".pdf")
    assert [i["id"] for i in aws_receiver.cli("integrations", "list")] == [created["id"]]
    events = [r2_event("a.pdf"), r2_event("b.txt"), r2_event("c.pdf", bucket="elsewhere")]
    aws_receiver.post_batch(created["id"], created["secret"], events)
    aws_receiver.post_batch(created["id"], created["secret"], events[:1])
    usage = aws_receiver.cli("integrations", "usage", created["id"], "--days", "7")
    assert usage["totals"] == {"accepted": 1, "duplicate/duplicate": 1, "skipped/suffix_filtered": 1,
                               "rejected/bucket_mismatch": 1}
    aws_receiver.cli("integrations", "pause", created["id"])
    assert aws_receiver.cli("integrations", "show", created["id"])["status"] == "paused"
    wait_for_config_change()
    paused = aws_receiver.post_batch(created["id"], created["secret"], [r2_event("d.pdf")])
    assert results(paused)[0]["reason"] == "paused"
    jobs = aws_receiver.cli("jobs", "list", check=False)
    assert jobs.returncode == 1 and "SQS" in jobs.stderr


def test_usage_counts_wait_in_memory_and_are_written_when_serve_stops(tmp_path, aws_stack, aws_proxy):
    # By default a process adds its requests' counts up and writes them every 10 s: one
    # UpdateItem per interval, not one per request. Held for a minute here, they are written
    # when the process ends, and none is lost.
    env = {**aws_stack.receiver_env(aws_proxy.port), "RELAY_USAGE_FLUSH": "60s"}
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env)
    receiver.start()
    try:
        created = receiver.create("r2", "uploads")
        aws_proxy.reset_counts()
        for name in ("a.pdf", "b.pdf", "c.pdf"):
            receiver.post_batch(created["id"], created["secret"], [r2_event(name)])
        receiver.post_batch(created["id"], created["secret"], [r2_event("a.pdf")])
        assert aws_proxy.count("dynamodb", "UpdateItem") == 0, "no usage write per request"
        # Another process reads what is written: nothing yet.
        waiting = receiver.cli("integrations", "usage", created["id"], "--days", "1")
        assert waiting["totals"] == {}, waiting
    finally:
        receiver.stop()  # SIGTERM: serve finishes, then writes what waits
    assert aws_proxy.count("dynamodb", "UpdateItem") == 1, "one write for the integration's hour"
    written = receiver.cli("integrations", "usage", created["id"], "--days", "1")
    assert written["totals"] == {"accepted": 3, "duplicate/duplicate": 1}


def test_a_usage_flush_interval_out_of_range_is_refused_by_name(tmp_path, aws_stack, aws_proxy):
    env = {**aws_stack.receiver_env(aws_proxy.port), "RELAY_USAGE_FLUSH": "2m"}
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env)
    refused = receiver.cli("integrations", "list", check=False)
    assert refused.returncode != 0 and "RELAY_USAGE_FLUSH must be 0s to 60s" in refused.stderr


def test_create_and_rotate_write_nothing_when_the_master_key_cannot_be_read(tmp_path, aws_stack, aws_proxy):
    # The secret is derived from the master key: an integration written without it would be one
    # whose secret nobody ever saw, and a rotation would bump a generation nobody can sign with.
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=aws_stack.receiver_env(aws_proxy.port))
    created = cli.create("s3", "docs")
    aws_stack.secrets.delete_secret(SecretId=aws_stack.secret_id, ForceDeleteWithoutRecovery=True)

    failed = cli.cli("integrations", "create", "--provider", "s3", "--bucket", "other", check=False)
    assert failed.returncode == 1 and "secretsmanager" in failed.stderr
    assert [i["id"] for i in cli.cli("integrations", "list")] == [created["id"]], "no orphan integration"

    rotated = cli.cli("integrations", "rotate-secret", created["id"], check=False)
    assert rotated.returncode == 1
    shown = cli.cli("integrations", "show", created["id"])
    assert shown["generation"] == 1, "no generation nobody saw"
    # show still works, and says why it cannot derive the external id
    assert shown["external_id"] is None and "secretsmanager" in shown["external_id_error"]


def test_a_client_hanging_up_mid_request_neither_loses_nor_doubles_a_job(aws_receiver, aws_stack):
    # Claim, send and complete run across several AWS calls; a client that hangs up after sending
    # its batch must not cut that sequence, or the retry finds claims never completed.
    import socket
    import time
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"cut/{i}.pdf") for i in range(100)]
    body = json.dumps({"events": events})
    headers = signed_headers(created["secret"], body)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (f"POST /v1/integrations/{created['id']}/events HTTP/1.1\r\nHost: x\r\n{head}"
               f"Content-Length: {len(body.encode())}\r\n\r\n").encode() + body.encode()
    with socket.create_connection(("127.0.0.1", aws_receiver.port)) as conn:
        conn.sendall(request)
        time.sleep(0.3)  # the body is in; hang up while the batch is being claimed and sent
    deadline = time.monotonic() + 30
    while aws_stack.depth() < 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # let the request finish marking its jobs done

    again = aws_receiver.post_batch(created["id"], created["secret"], None, body=body)
    assert again.status_code == 200
    assert {r["outcome"] for r in again.json()["results"]} == {"duplicate"}, again.text
    assert aws_stack.depth() == 100, "every object exactly once"


def test_entries_sqs_fails_are_retried_later_and_then_enqueued_once(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"partial/{i}.pdf") for i in range(10)]
    # Every other entry fails on the first SendMessageBatch and again on the receiver's retry.
    aws_proxy.fail_entries(2)
    first = [r["outcome"] for r in aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]]
    aws_proxy.heal()
    assert set(first) == {"accepted", "retry_later"} and first.count("retry_later") >= 1, first
    again = [r["outcome"] for r in aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]]
    assert [a for a, f in zip(again, first) if f == "retry_later"] == ["accepted"] * first.count("retry_later")
    assert [a for a, f in zip(again, first) if f == "accepted"] == ["duplicate"] * first.count("accepted")
    assert aws_stack.depth() == 10, "every object exactly once"


def test_entries_sqs_refuses_as_sent_are_rejected_not_retried(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"refused/{i}.pdf") for i in range(10)]
    aws_proxy.reset_counts()
    aws_proxy.fail_entries(1, sender_fault=True)
    first = aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]
    aws_proxy.heal()
    # One SendMessageBatch: a sender fault is not sent again, and its events are dead-lettered
    # (rejected) instead of being retried by the worker until its retries run out.
    assert aws_proxy.counts[("sqs", "SendMessageBatch")] == 1
    assert [(r["outcome"], r.get("reason")) for r in first[1::2]] == [("rejected", "queue_refused")] * 5
    assert [r["outcome"] for r in first[0::2]] == ["accepted"] * 5
    assert aws_stack.depth() == 5
    # Their claims were released: replayed from the dead-letter queue once fixed, they are jobs.
    again = aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]
    assert [r["outcome"] for r in again[1::2]] == ["accepted"] * 5
    assert [r["outcome"] for r in again[0::2]] == ["duplicate"] * 5
    assert aws_stack.depth() == 10


def test_throttling_mid_claim_gives_back_the_claims_already_won(aws_receiver, aws_stack, aws_proxy):
    created = aws_receiver.create("r2", "uploads")
    events = [r2_event(f"throttled/{i}.pdf") for i in range(10)]
    aws_proxy.throttle("PutItem", after=3, calls=1000)
    first = aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]
    aws_proxy.heal()
    assert {(r["outcome"], r["reason"]) for r in first} == {("retry_later", "backend_unavailable")}
    assert aws_stack.depth() == 0
    # The three claims that went through were released: the retry is accepted, not in_flight.
    again = aws_receiver.post_batch(created["id"], created["secret"], events).json()["results"]
    assert [r["outcome"] for r in again] == ["accepted"] * 10, again
    assert aws_stack.depth() == 10


# --- faults mid-burst -------------------------------------------------------------------------

def drain(stack):
    """Receives and deletes every message on the queue (a FIFO group hands out more only once
    the ones received are deleted); returns the bodies."""
    found = []
    while True:
        batch = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=60).get("Messages", [])
        if not batch:
            return found
        found.extend(valid_job(json.loads(m["Body"])) for m in batch)
        stack.sqs.delete_message_batch(QueueUrl=stack.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])


@pytest.mark.parametrize("fifo", [True, False], ids=["fifo", "standard"])
def test_a_request_dying_between_send_and_done_costs_fifo_nothing(tmp_path, moto, aws_proxy, fifo):
    # The jobs reach SQS, then marking them done fails (as when Lambda times out right there):
    # the claims stay pending. A redelivery within the lease is in_flight; one after it claims
    # again and sends again. The lease (4 min; 6 s here) ends inside SQS's 5-minute FIFO
    # deduplication window, so a FIFO queue drops the second send by its deduplication id, the
    # job id. A standard queue has no such window: the pipeline sees the job twice, with the
    # same job_id, as the README says.
    import time
    lease = 6
    requests.post(f"http://127.0.0.1:{moto}/moto-api/reset", timeout=10)
    stack = AwsStack(moto, fifo=fifo)
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log",
                        env={**stack.receiver_env(aws_proxy.port), "RELAY_CLAIM_LEASE": f"{lease}s"})
    receiver.start()
    try:
        created = receiver.create("r2", "uploads")
        events = [r2_event(f"dying/{i}.pdf") for i in range(10)]
        aws_proxy.throttle("BatchWriteItem", after=0, calls=1000)
        claimed_before = time.monotonic()
        first = results(receiver.post_batch(created["id"], created["secret"], events))
        aws_proxy.heal()
        assert [r["outcome"] for r in first] == ["accepted"] * 10
        within = results(receiver.post_batch(created["id"], created["secret"], events))
        assert {(r["outcome"], r["reason"]) for r in within} == {("retry_later", "in_flight")}
        assert time.monotonic() < claimed_before + lease, "the lease ran out before the redelivery"
        time.sleep(max(0.0, claimed_before + lease + 0.5 - time.monotonic()))
        after = results(receiver.post_batch(created["id"], created["secret"], events))
        assert [r["outcome"] for r in after] == ["accepted"] * 10
        jobs = drain(stack)
        assert len({job["job_id"] for job in jobs}) == 10
        assert len(jobs) == (10 if fifo else 20)
    finally:
        receiver.stop()


def test_aws_going_away_mid_burst_loses_and_doubles_nothing(tmp_path, moto, aws_proxy):
    # AWS fails, then goes away, for four seconds in the middle of a burst from four senders that, like
    # the worker, send again whatever was not final. Some requests die between sending their
    # jobs and marking them done: their claims lapse (after a lease shortened to 3 s here) and the
    # re-sent jobs reach SQS a second time, where the FIFO queue's deduplication by job id drops
    # them. The pipeline sees every object once.
    import time
    from concurrent.futures import ThreadPoolExecutor
    requests.post(f"http://127.0.0.1:{moto}/moto-api/reset", timeout=10)
    stack = AwsStack(moto, fifo=True)
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log",
                        env={**stack.receiver_env(aws_proxy.port), "RELAY_CLAIM_LEASE": "3s"})
    receiver.start()
    try:
        created = receiver.create("r2", "uploads")
        events = [r2_event(f"burst/{i}.pdf") for i in range(600)]
        seen = {"requests": 0, "unavailable": 0, "retry_later": 0}
        lock = threading.Lock()
        under_way = threading.Event()  # a few requests are through: the burst is on
        outage = threading.Event()  # AWS has started failing
        # The first eight batches go at once; the rest wait for the outage, so the burst
        # runs into it however fast this machine clears the first part.
        head = 8

        def deliver(index, batch):
            if index >= head:
                assert outage.wait(60), "the outage did not start"
            deadline = time.monotonic() + 120
            while batch:
                assert time.monotonic() < deadline, "events still not final after 2 minutes"
                response = receiver.post_batch(created["id"], created["secret"], batch)
                with lock:
                    seen["requests"] += 1
                    if seen["requests"] >= 4:
                        under_way.set()
                if response.status_code == 503:
                    with lock:
                        seen["unavailable"] += 1
                    time.sleep(0.3)
                    continue
                assert response.status_code == 200, response.text
                outcomes = [r["outcome"] for r in results(response)]
                assert set(outcomes) <= {"accepted", "duplicate", "retry_later"}, outcomes
                batch = [e for e, outcome in zip(batch, outcomes) if outcome == "retry_later"]
                if batch:
                    with lock:
                        seen["retry_later"] += len(batch)
                    time.sleep(0.3)

        with ThreadPoolExecutor(4) as pool:
            batches = [events[i:i + 25] for i in range(0, len(events), 25)]
            sent = [pool.submit(deliver, n, batch) for n, batch in enumerate(batches)]
            assert under_way.wait(60), "the burst did not start"
            # At once: DynamoDB and SQS answer 503; then the endpoint is gone altogether.
            aws_proxy.fail("dynamodb")
            aws_proxy.fail("sqs")
            outage.set()
            aws_proxy.stop()
            # Longer than the SDK's three attempts can wait out (backoff up to 1 s, then 2 s).
            time.sleep(4)
            aws_proxy.start()
            aws_proxy.heal()
            for future in sent:
                future.result()
        jobs = drain(stack)
        expected = {e["notification"]["object"]["key"] for e in events}
        ids = [job["job_id"] for job in jobs]
        keys = {job["key"] for job in jobs}
        print(f"\nAWS outage mid-burst: sent {len(events)}, requests {seen['requests']} "
              f"({seen['unavailable']} answered 503, {seen['retry_later']} events retry_later), "
              f"jobs {len(jobs)}, duplicates {len(ids) - len(set(ids))}, "
              f"lost {len(expected - keys)}")
        assert seen["unavailable"] + seen["retry_later"] > 0, "the outage fell outside the burst"
        assert len(ids) == len(set(ids)) == len(events)
        assert keys == expected
    finally:
        receiver.stop()


def ledger_table(stack, **billing):
    """The ledger table made again with `billing` (as an operator may provision it)."""
    stack.dynamodb.delete_table(TableName=stack.ledger_table)
    stack.dynamodb.create_table(TableName=stack.ledger_table, KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}], **billing)


def r2_bucket_on_aws_backends(tmp_path, stack, aws_proxy, moto, objects):
    """An R2 integration over a bucket of `objects` objects on moto, its ledger and queue on
    `stack`, every call through the counting proxy: the CLI and the integration."""
    import boto3
    env = {**stack.receiver_env(aws_proxy.port), "RELAY_R2_SECRET_ACCESS_KEY": "r2-secret-for-the-backfill-test",
           "RELAY_R2_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}"}
    cli = Receiver(tmp_path / "cli", tmp_path / "cli.log", env=env)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto}", region_name="us-east-1")
    s3.create_bucket(Bucket="uploads")
    for i in range(objects):
        s3.put_object(Bucket="uploads", Key=f"in/{i:03d}.pdf", Body=b"x")
    r2 = cli.create("r2", "uploads", "--account", R2_ACCOUNT)
    cli.cli("integrations", "set-source", r2["id"], "--r2-access-key-id", "R2KEYPACE")
    return cli, r2


def test_a_backfill_on_dynamodb_holds_its_writes_to_half_the_ledger_table_s_capacity(tmp_path, aws_stack,
                                                                                      aws_proxy, moto):
    cli, r2 = r2_bucket_on_aws_backends(tmp_path, aws_stack, aws_proxy, moto, 25)
    env = cli.env

    # On demand, as the receiver module makes it: DynamoDB serves a new table's 4,000 write
    # units a second at once (its warm throughput), and the backfill takes half.
    done = cli.cli("backfill", r2["id"])
    assert done["tally"]["jobs"] == 25
    assert done["paced"] == {"write_units_per_second": 2000, "source": "warm_throughput", "table_units": 4000,
                             "commits_at_once": 1, "waited_s": 0.0}

    # Provisioned at 40 write units: 20 for the backfill, in parts of 10 objects (30 units, a
    # second and a half each). The second part waits half a second, the third a second and a half.
    ledger_table(aws_stack, BillingMode="PROVISIONED",
                 ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 40})
    done = cli.cli("backfill", r2["id"])
    assert done["tally"]["jobs"] == 25, "a new ledger remembers no job"
    paced = done["paced"]
    assert (paced["source"], paced["write_units_per_second"], paced["table_units"]) == ("provisioned", 20, 40)
    assert 1.0 < paced["waited_s"] <= 2.0, paced

    # On demand, warmed for a big backfill. (A maximum on-demand throughput below the warm one
    # would be the capacity instead: moto does not keep one, a unit test reads it.)
    ledger_table(aws_stack, BillingMode="PAY_PER_REQUEST",
                 WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 10000})
    paced = cli.cli("backfill", r2["id"])["paced"]
    assert (paced["source"], paced["write_units_per_second"], paced["table_units"]) == ("warm_throughput", 5000,
                                                                                        10000)

    # The operator's rate wins; an operator who may not DescribeTable is told, and not paced.
    assert cli.cli("backfill", r2["id"], "--write-units", "90")["paced"]["source"] == "flag"
    aws_proxy.deny("DescribeTable")
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(cli.data_dir), "--json", "backfill", r2["id"]],
                            capture_output=True, text=True, timeout=60, env={**env, "RELAY_LOG": "warn"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["paced"] is None
    [line] = [json.loads(line) for line in result.stderr.splitlines() if "backfill_unpaced" in line]
    assert line["integration_id"] == r2["id"] and "AccessDenied" in line["detail"], line


def test_a_backfill_on_a_warmed_table_commits_as_many_jobs_at_once_as_its_pace_needs(tmp_path, aws_stack,
                                                                                     aws_proxy, moto):
    cli, r2 = r2_bucket_on_aws_backends(tmp_path, aws_stack, aws_proxy, moto, 400)
    everything = [f"in/{i:03d}.pdf" for i in range(400)]
    # A new on-demand table: half its 4,000 units is about 670 new jobs a second, what one commit
    # of 100 after another makes at DynamoDB's few milliseconds a call (16 claims in flight).
    aws_proxy.reset_counts()
    assert cli.cli("backfill", r2["id"])["tally"]["jobs"] == 400
    assert aws_proxy.most_in_flight["PutItem"] <= 16, aws_proxy.most_in_flight
    assert sorted(drained_keys(aws_stack)) == everything
    # Warmed to 40,000: 6,666 jobs a second, seven commits at once. The page's four go together.
    ledger_table(aws_stack, BillingMode="PAY_PER_REQUEST",
                 WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 40000})
    aws_proxy.reset_counts()
    done = cli.cli("backfill", r2["id"])
    assert done["tally"]["jobs"] == 400, "a new ledger remembers no job"
    assert done["paced"]["commits_at_once"] == 7
    assert 16 < aws_proxy.most_in_flight["PutItem"] <= 64, aws_proxy.most_in_flight
    assert sorted(drained_keys(aws_stack)) == everything


def test_a_backfill_into_a_fifo_queue_keeps_the_listing_s_order(tmp_path, fifo_stack, aws_proxy, moto):
    cli, r2 = r2_bucket_on_aws_backends(tmp_path, fifo_stack, aws_proxy, moto, 250)
    ledger_table(fifo_stack, BillingMode="PAY_PER_REQUEST",
                 WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 40000})
    aws_proxy.reset_counts()
    done = cli.cli("backfill", r2["id"])
    assert done["tally"]["jobs"] == 250 and done["paced"]["commits_at_once"] == 1
    # Paced for seven commits at once, but one at a time: the group gets the listing's order.
    assert aws_proxy.most_in_flight["PutItem"] <= 16
    assert drained_keys(fifo_stack) == [f"in/{i:03d}.pdf" for i in range(250)]

"""`bucket-relay status`: the operator's one screen, on the embedded backend and on AWS (moto):
each integration's mode, state, last event and events of the last hour and day, the queues'
depths, and the integrations refused or retried more than half the time."""

import json
import signal
import subprocess
import time

from support import R2_ACCOUNT, RELAY_BIN, r2_event


def status(relay, *args):
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), *args], capture_output=True,
                            text=True, timeout=60, env=relay.env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def send_some(relay):
    """An integration with one accepted event, another with three of four events rejected."""
    good = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    bad = relay.create("r2", "photos", "--account", R2_ACCOUNT)
    assert relay.post_batch(good["id"], good["secret"], [r2_event("in/a.pdf")]).status_code == 200
    events = [r2_event("in/b.pdf", bucket="photos")] + [r2_event(f"in/{i}.pdf", bucket="other") for i in range(3)]
    results = relay.post_batch(bad["id"], bad["secret"], events).json()["results"]
    assert [r["outcome"] for r in results] == ["accepted", "rejected", "rejected", "rejected"]
    return good["id"], bad["id"]


def check(found, good, bad):
    by_id = {i["id"]: i for i in found["integrations"]}
    assert by_id[good]["last_hour"] == {"accepted": 1} == by_id[good]["last_day"]
    assert by_id[good]["error_share_last_hour"] == 0
    assert (by_id[good]["mode"], by_id[good]["status"]) == ("event", "active")
    assert by_id[good]["last_event"]["outcome"] == "accepted"
    assert by_id[good]["last_event"]["key"] == "in/a.pdf"
    assert by_id[bad]["last_hour"] == {"accepted": 1, "rejected": 3}
    assert by_id[bad]["error_share_last_hour"] == 0.75
    assert found["above_threshold"] == [bad] and found["error_share_alarm"] == 0.5


def test_status_on_the_embedded_backend(receiver):
    good, bad = send_some(receiver)
    found = json.loads(status(receiver, "--json", "status"))
    check(found, good, bad)
    assert found["queues"] == [{"queue": "embedded", "waiting": 2, "in_flight": None}]
    text = status(receiver, "status")
    assert f"Refused or retried more than 50% of the time in the last hour: {bad}" in text
    assert "queue embedded: 2 waiting" in text


def test_status_watches_until_interrupted_and_refuses_a_zero_interval(receiver):
    watch = subprocess.Popen([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "status", "--watch", "1s"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=receiver.env)
    time.sleep(2.5)
    watch.send_signal(signal.SIGINT)
    out, _ = watch.communicate(timeout=10)
    assert watch.returncode == 0
    assert out.count("Bucket Relay at ") >= 2, out
    refused = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "status", "--watch", "0s"],
                             capture_output=True, text=True, env=receiver.env)
    assert refused.returncode == 1 and "--watch" in refused.stderr


def test_status_on_aws_reads_dynamodb_and_the_sqs_queues(aws_receiver, aws_stack):
    good, bad = send_some(aws_receiver)
    found = json.loads(status(aws_receiver, "--json", "status"))
    check(found, good, bad)
    queues = {q["queue"]: q for q in found["queues"]}
    assert queues["ingest"]["waiting"] == 2 and queues["ingest"]["in_flight"] == 0
    assert queues["ingest-dlq"]["waiting"] == 0, "found through the ingest queue's redrive policy"

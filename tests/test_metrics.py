"""`serve --metrics-listen`: Prometheus' text format on an address of its own, whose counters move
as events are accepted, duplicated, skipped and refused, and which the real `promtool check
metrics` accepts."""

import base64
import os
import re
import shutil
import subprocess

import requests

from support import R2_ACCOUNT, Receiver, free_port, r2_event

SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def scrape(port):
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def samples(text):
    """{(name, frozenset of label pairs): value} for every sample line."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, labels, value = SAMPLE.match(line).groups()
        pairs = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', labels or ""))
        found[(name, pairs)] = float(value)
    return found


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())), 0.0)


def test_serve_answers_prometheus_metrics_that_move_with_the_events(tmp_path):
    port = free_port()
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", serve_args=["--metrics-listen", f"127.0.0.1:{port}"])
    relay.start()
    try:
        integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT, "--suffix", ".pdf")
        iid, secret = integration["id"], integration["secret"]
        before = samples(scrape(port))
        assert value(before, "bucket_relay_events_total", integration_id=iid, outcome="accepted", reason="") == 0
        assert any(name == "bucket_relay_build_info" for name, _ in before)

        accepted = r2_event("in/a.pdf")
        assert relay.post_batch(iid, secret, [accepted]).status_code == 200
        assert relay.post_batch(iid, secret, [accepted, r2_event("in/notes.txt"),
                                              r2_event("in/b.pdf", bucket="other")]).status_code == 200
        wrong = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        assert relay.post_batch(iid, wrong, [r2_event("in/c.pdf")]).status_code == 401

        text = scrape(port)
        after = samples(text)
        events = {(outcome, reason): value(after, "bucket_relay_events_total", integration_id=iid, outcome=outcome,
                                           reason=reason)
                  for outcome, reason in [("accepted", ""), ("duplicate", "duplicate"),
                                          ("skipped", "suffix_filtered"), ("rejected", "bucket_mismatch")]}
        assert events == {("accepted", ""): 1, ("duplicate", "duplicate"): 1,
                          ("skipped", "suffix_filtered"): 1, ("rejected", "bucket_mismatch"): 1}
        assert value(after, "bucket_relay_requests_total", status="200") == 2
        assert value(after, "bucket_relay_requests_total", status="401") == 1
        assert value(after, "bucket_relay_requests_refused_total", reason="invalid_secret") == 1
        assert sum(v for (name, _), v in after.items() if name == "bucket_relay_auth_failures_total") == 1
        assert value(after, "bucket_relay_request_duration_seconds_count") == 3
        # One new job on the embedded queue, read at the scrape; each request was one commit.
        assert value(after, "bucket_relay_queue_jobs", queue="embedded") == 1
        assert value(after, "bucket_relay_commits_total") >= 2
        assert value(after, "bucket_relay_commit_group_requests_count") == value(after, "bucket_relay_commits_total")

        promtool = shutil.which("promtool")
        assert promtool, "scripts/test installs promtool (Debian's prometheus package)"
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        # Not on the public port, which senders reach.
        assert requests.get(f"{relay.url}/metrics", timeout=5).status_code == 404
    finally:
        relay.stop()


def test_with_emf_each_request_is_one_cloudwatch_line_from_the_same_events(tmp_path):
    # What the Lambda function prints (EMF is its default): here through `serve --metrics emf`,
    # whose stdout is the log file.
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", serve_args=["--metrics", "emf"])
    relay.start()
    try:
        integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT, "--suffix", ".pdf")
        iid, secret = integration["id"], integration["secret"]
        answer = relay.post_batch(iid, secret, [r2_event("in/a.pdf"), r2_event("in/notes.txt")])
        assert answer.status_code == 200
        wrong = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        assert relay.post_batch(iid, wrong, [r2_event("in/c.pdf")]).status_code == 401
        documents = [line for line in relay.log_lines() if "_aws" in line]
        assert len(documents) == 2, "one line per request"
        first, second = documents
        assert {k: v for k, v in first.items() if k.startswith(("events_", "reason_"))} == {
            "events_accepted": 1, "events_skipped": 1, "reason_suffix_filtered": 1}
        assert {k: v for k, v in second.items() if k.startswith(("events_", "reason_"))} == {
            "reason_invalid_secret": 1}
        declared = first["_aws"]["CloudWatchMetrics"][0]
        assert declared["Namespace"] == "BucketRelay" and declared["Dimensions"] == [["service"]]
        assert sorted(m["Name"] for m in declared["Metrics"]) == [
            "events_accepted", "events_skipped", "reason_suffix_filtered"]
    finally:
        relay.stop()

"""Per-integration admission, end to end on the real binary: `--max-jobs-per-minute` holds across
receivers sharing a store (two `serve` processes on one data dir; two receivers on DynamoDB in
moto), answers what is over it `rate_limited` so that its sender sends it again, and slows a
listing down instead of failing it; `--overwrites ignore` keeps only a key's first version, on R2's
and S3's events alike.

The receivers run with `RELAY_RATE_WINDOW=500ms`: the limit's "minute" lasts half a second, so a
burst that a limit of 60 a minute spreads over 17 minutes takes 8.5 seconds here, window for
window the same.
"""

import datetime as dt
import json
import subprocess
import threading
import time
import uuid
from collections import Counter

from support import R2_ACCOUNT, RELAY_BIN, Receiver, r2_event, s3_object_created
from test_aws import drain

WINDOW_S = 0.5
RATE_ENV = {"RELAY_RATE_WINDOW": "500ms"}
LIMIT = 60


def window_of(job):
    """The rate window a job was admitted in: its `received_at` is the request's clock, which
    the window is read from too."""
    at = dt.datetime.fromisoformat(job["received_at"].replace("Z", "+00:00"))
    return int(at.timestamp() * 1000) // int(WINDOW_S * 1000)


def send_until_settled(receivers, integration_id, secret, events):
    """Sends `events` in batches of 100, spread over `receivers` from concurrent threads, and
    sends again every event answered `retry_later`, as the worker does, until none is left.
    Answers the count of each (outcome, reason) over every answer."""
    answers = Counter()
    pending = list(events)
    lock = threading.Lock()
    rounds = 0
    while pending and rounds < 400:
        rounds += 1
        batches = [pending[i:i + 100] for i in range(0, len(pending), 100)]
        again = []

        def deliver(index, batch):
            relay = receivers[index % len(receivers)]
            results = relay.post_batch(integration_id, secret, batch).json()["results"]
            with lock:
                for event, result in zip(batch, results):
                    answers[(result["outcome"], result["reason"])] += 1
                    if result["outcome"] == "retry_later":
                        again.append(event)

        threads = [threading.Thread(target=deliver, args=(i, b)) for i, b in enumerate(batches)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pending = again
        if pending:
            time.sleep(WINDOW_S / 4)
    assert not pending, f"{len(pending)} events never settled"
    return answers


def assert_the_limit_held(jobs, count, elapsed):
    keys = [job["key"] for job in jobs]
    assert len(keys) == count and len(set(keys)) == count, "every event one job, none twice"
    per_window = Counter(window_of(job) for job in jobs)
    assert max(per_window.values()) <= LIMIT, f"a window made {max(per_window.values())} jobs"
    windows = -(-count // LIMIT)
    assert len(per_window) >= windows
    # The first job may come at the end of its window and the last at the start of its own:
    # `windows` windows span at least `windows - 2` whole ones.
    assert elapsed >= (windows - 2) * WINDOW_S, "the burst took less time than the limit implies"


def usage_totals(relay, integration_id):
    return relay.cli("integrations", "usage", integration_id, "--days", "1")["totals"]


def test_set_limits_is_checked_by_name_and_shown(receiver):
    created = receiver.create("r2", "uploads")
    for args, code, words in [
        (["--max-jobs-per-minute", "0"], 2, "--max-jobs-per-minute must be 1 to 1000000"),
        (["--max-jobs-per-minute", "lots"], 2, "is not a number of jobs"),
        (["--max-object-bytes", "0"], 1, "--max-object-bytes must be at least 1"),
        (["--overwrites", "first"], 2, "expected one of: new-job, ignore"),
    ]:
        refused = receiver.cli("integrations", "set-limits", created["id"], *args, check=False)
        assert refused.returncode == code and words in refused.stderr, (args, refused.stderr)
    shown = receiver.cli("integrations", "show", created["id"])
    assert "max_jobs_per_minute" not in shown and shown.get("overwrites", "new-job") == "new-job"

    report = receiver.cli("integrations", "set-limits", created["id"], "--max-jobs-per-minute", "60",
                          "--overwrites", "ignore")
    # R2 on Paid: the worker retries a rate_limited message for 341,120 s (20 waits doubling
    # from 10 s to 12 h); at 60 a minute a burst of 341,120 objects drains within them.
    assert report["rate"]["retry_span_seconds"] == 341_120
    assert report["rate"]["backlog_carried"] == 341_120 and report["rate"]["jobs_per_day"] == 86_400
    assert "warning" not in report["rate"]
    shown = receiver.cli("integrations", "show", created["id"])
    assert (shown["max_jobs_per_minute"], shown["overwrites"]) == (60, "ignore")
    text = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "integrations", "list"],
                          capture_output=True, text=True, env=receiver.env).stdout
    assert "rate=60/min" in text and "overwrites=ignore" in text
    receiver.cli("integrations", "set-limits", created["id"], "--max-jobs-per-minute", "none")
    assert "max_jobs_per_minute" not in receiver.cli("integrations", "show", created["id"])

    # A day busier than the limit admits is named: its backlog would only grow.
    for batch in range(15):
        receiver.post_batch(created["id"], created["secret"],
                            [r2_event(f"day/{batch}-{i}.pdf") for i in range(100)])
    report = receiver.cli("integrations", "set-limits", created["id"], "--max-jobs-per-minute", "1")
    assert report["rate"]["busiest_day"][1] == 1500
    assert "1500 jobs, more than the 1440 a day this limit admits" in report["rate"]["warning"]
    eventbridge = receiver.create("s3", "docs")
    report = receiver.cli("integrations", "set-limits", eventbridge["id"], "--max-jobs-per-minute", "10")
    assert report["rate"]["retry_span_seconds"] == 86_400, "EventBridge retries an event for a day"


def test_a_burst_over_the_limit_becomes_every_job_once_across_two_serve_processes(tmp_path):
    data = tmp_path / "relay"
    first = Receiver(data, tmp_path / "first.log", env=RATE_ENV)
    second = Receiver(data, tmp_path / "second.log", env=RATE_ENV)
    created = first.create("r2", "uploads", "--max-jobs-per-minute", str(LIMIT))
    first.start()
    second.start()
    try:
        events = [r2_event(f"burst/{i:04}.pdf") for i in range(1000)]
        started = time.monotonic()
        answers = send_until_settled([first, second], created["id"], created["secret"], events)
        elapsed = time.monotonic() - started
        assert_the_limit_held(first.jobs(), 1000, elapsed)
        assert answers[("accepted", None)] == 1000
        limited = answers[("retry_later", "rate_limited")]
        assert limited > 0
        totals = usage_totals(first, created["id"])
        assert totals["accepted"] == 1000 and totals["retry_later/rate_limited"] == limited
        print(f"two serve processes: 1000 jobs in {elapsed:.1f} s ({elapsed / WINDOW_S:.0f} windows), "
              f"{limited} answers rate_limited")
    finally:
        first.stop()
        second.stop()


def test_a_burst_over_the_limit_holds_across_receivers_on_dynamodb(tmp_path, aws_stack, aws_proxy):
    env = {**aws_stack.receiver_env(aws_proxy.port), **RATE_ENV}
    receivers = [Receiver(tmp_path / f"relay{i}", tmp_path / f"serve{i}.log", env=env) for i in range(2)]
    created = receivers[0].create("r2", "uploads", "--max-jobs-per-minute", str(LIMIT))
    for relay in receivers:
        relay.start()
    try:
        events = [r2_event(f"burst/{i:04}.pdf") for i in range(1000)]
        started = time.monotonic()
        answers = send_until_settled(receivers, created["id"], created["secret"], events)
        elapsed = time.monotonic() - started
        assert_the_limit_held(drain(aws_stack), 1000, elapsed)
        assert answers[("accepted", None)] == 1000 and answers[("retry_later", "rate_limited")] > 0
        totals = usage_totals(receivers[0], created["id"])
        assert totals["accepted"] == 1000
        assert totals["retry_later/rate_limited"] == answers[("retry_later", "rate_limited")]
        print(f"two receivers on DynamoDB: 1000 jobs in {elapsed:.1f} s ({elapsed / WINDOW_S:.0f} windows)")
    finally:
        for relay in receivers:
            relay.stop()


def test_a_backfill_over_the_limit_waits_for_each_window_and_lists_everything(relay, s3):
    from test_completeness import r2_with_token
    from test_poll import bucket, put
    name = f"lim-{uuid.uuid4().hex[:8]}"
    bucket(s3, name)
    for i in range(150):
        put(s3, name, f"in/{i:03}.pdf")
    relay.env.update(RATE_ENV)
    iid, _ = r2_with_token(relay, name)
    relay.cli("integrations", "set-limits", iid, "--max-jobs-per-minute", str(LIMIT))
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", "backfill", iid],
                            capture_output=True, text=True, timeout=120, env=relay.env)
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["tally"]["jobs"] == 150 and done["tally"].get("unsettled", 0) == 0
    waits = [json.loads(line) for line in result.stderr.splitlines()
             if line.startswith("{") and '"rate_limit_wait"' in line]
    assert len(waits) >= 2, "150 jobs at 60 a window wait for two windows"
    assert all(w["integration_id"] == iid and w["jobs_waiting"] > 0 for w in waits)
    assert len(relay.jobs()) == 150


def test_overwrites_ignore_keeps_each_keys_first_version_on_r2_and_s3(receiver):
    r2 = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--overwrites", "ignore")
    s3 = receiver.create("s3", "docs", "--overwrites", "ignore")
    r2_new = receiver.create("r2", "uploads", "--account", R2_ACCOUNT)
    s3_new = receiver.create("s3", "docs")

    def r2_answers(created, etags):
        events = [r2_event("in/a.pdf", etag=etag) for etag in etags]
        return [(r["outcome"], r["reason"]) for r in
                receiver.post_batch(created["id"], created["secret"], events).json()["results"]]

    def s3_answer(created, **identity):
        response = receiver.post_eventbridge(created["id"], created["secret"],
                                             s3_object_created("in/a.pdf", **identity))
        assert response.status_code == 200, response.text
        return response.status_code, response.json()["results"][0]["reason"]

    # R2 gives no version id: a version is its ETag. The first, the second, the first again.
    first, second = "0" * 31 + "1", "0" * 31 + "2"
    assert r2_answers(r2, [first]) == [("accepted", None)]
    assert r2_answers(r2, [second, first]) == [("skipped", "overwrite_ignored"), ("duplicate", "duplicate")]
    assert r2_answers(r2_new, [first, second]) == [("accepted", None), ("accepted", None)]

    # S3, versioned: the version id; unversioned: only the ETag.
    assert s3_answer(s3, version_id="v1") == (200, None)
    assert s3_answer(s3, version_id="v2") == (200, "overwrite_ignored")
    why = receiver.cli("events", "why", "--integration", s3["id"], "--key", "in/a.pdf")
    assert why["last"]["reason"] == "overwrite_ignored", why
    assert s3_answer(s3, version_id="v1") == (200, "duplicate")
    assert s3_answer(s3_new, version_id="v1")[1] is None
    assert s3_answer(s3_new, version_id="v2")[1] is None
    unversioned = receiver.create("s3", "plain", "--overwrites", "ignore")
    plain = lambda etag: s3_answer(unversioned, bucket="plain", version_id=None, etag=etag)  # noqa: E731
    assert plain('"e1"') == (200, None) and plain('"e2"') == (200, "overwrite_ignored")

    jobs = receiver.jobs()
    per_integration = Counter(job["integration_id"] for job in jobs)
    assert per_integration == {r2["id"]: 1, s3["id"]: 1, r2_new["id"]: 2, s3_new["id"]: 2, unversioned["id"]: 1}
    kept = {job["integration_id"]: job for job in jobs}
    assert kept[s3["id"]]["version_id"] == "v1" and kept[r2["id"]]["etag"] == first


def test_overwrites_ignore_holds_on_dynamodb_under_concurrent_versions(aws_receiver, aws_stack):
    created = aws_receiver.create("s3", "docs", "--overwrites", "ignore")
    versions = [f"v{i}" for i in range(8)]
    answers = []

    def send(version):
        response = aws_receiver.post_eventbridge(created["id"], created["secret"],
                                                 s3_object_created("in/a.pdf", version_id=version))
        answers.append(response.json()["results"][0]["reason"])

    threads = [threading.Thread(target=send, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers, key=str) == sorted([None] + ["overwrite_ignored"] * 7, key=str), answers
    jobs = drain(aws_stack)
    assert len(jobs) == 1 and jobs[0]["version_id"] in versions
    again = aws_receiver.post_eventbridge(created["id"], created["secret"],
                                          s3_object_created("in/a.pdf", version_id=jobs[0]["version_id"]))
    assert again.json()["results"][0]["reason"] == "duplicate"

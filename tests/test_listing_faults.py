"""Listings are untrusted input: a storage answering like a broken or hostile one (`fake_s3.py`)
must not hang `poll` or `backfill`, hold back a healthy integration, or end a run as "done" with
objects never taken. Each failure is named, bounded in calls, and keeps the run's place."""

import json
import signal
import subprocess
import time

import pytest

from fake_s3 import FakeS3
from support import AWS_TEST_ENV, R2_ACCOUNT, RELAY_BIN, Receiver

ROLE_ARN = "arn:aws:iam::123456789012:role/bucket-relay-read"


@pytest.fixture
def fake():
    server = FakeS3()
    yield server
    server.stop()


@pytest.fixture
def relay(tmp_path, fake):
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": fake.url, "RELAY_R2_ENDPOINT_URL": fake.url,
           "RELAY_R2_SECRET_ACCESS_KEY": "fake-secret"}
    return Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env)


def r2(relay, bucket, *extra):
    created = relay.create("r2", bucket, "--account", R2_ACCOUNT, *extra)
    relay.cli("integrations", "set-source", created["id"], "--r2-access-key-id", "FAKEKEYID")
    return created["id"]


def run(relay, *args):
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", *args],
                            capture_output=True, text=True, timeout=120, env=relay.env)
    try:
        out = json.loads(result.stdout)
    except json.JSONDecodeError:
        out = None
    return result.returncode, out, result.stderr


@pytest.mark.parametrize("bucket, error, taken", [
    # The first page is a good one: its objects are taken, once; the repeat is refused.
    ("same-token", "listing_stuck", ["a.pdf"]),
    ("new-token-same-keys", "listing_stuck", ["a.pdf", "b.pdf"]),
    # A page that does not say it is whole is not taken at all.
    ("cut-short", "listing_incomplete", []),
    ("truncated-no-token", "listing_incomplete", []),
])
def test_a_listing_that_never_ends_or_is_cut_short_is_named_and_holds_no_one_back(relay, fake, bucket, error, taken):
    broken = r2(relay, bucket, "--mode", "poll")
    fine = r2(relay, "healthy", "--mode", "poll")
    code, ticks, stderr = run(relay, "poll")
    assert code == 1, stderr
    by_id = {tick["id"]: tick for tick in ticks}
    assert by_id[fine]["ok"] and by_id[fine]["tally"]["jobs"] == 1, "the healthy integration was polled"
    assert by_id[broken]["error"] == error, by_id[broken]
    assert fake.calls[bucket] <= 3, "stopped at once, not after thousands of calls"
    assert sorted(job["key"] for job in relay.jobs()) == sorted(["ok.pdf", *taken])
    # The broken one's watermark did not move: its next tick looks at the same objects again.
    again, _, _ = run(relay, "poll", "--integration", broken)
    assert again == 1
    assert sorted(job["key"] for job in relay.jobs()) == sorted(["ok.pdf", *taken]), "nothing twice"


@pytest.mark.parametrize("bucket, error", [("cut-short", "listing_incomplete"), ("same-token", "listing_stuck")])
def test_a_backfill_of_a_broken_listing_is_not_done_and_keeps_its_place(relay, fake, bucket, error):
    iid = r2(relay, bucket)
    for _ in range(2):
        code, out, stderr = run(relay, "backfill", iid)
        assert code == 1 and error in stderr and out is None, stderr


def test_versions_truncated_without_a_marker_are_incomplete_on_s3(relay, fake):
    created = relay.create("s3", "versions-no-marker", "--account", "123456789012", "--region", "us-east-1",
                           "--mode", "poll")
    relay.cli("integrations", "set-source", created["id"], "--role-arn", ROLE_ARN)
    code, ticks, stderr = run(relay, "poll")
    assert code == 1, stderr
    assert ticks[0]["error"] == "listing_incomplete", ticks
    assert fake.calls["versions-no-marker"] == 1


def test_ctrl_c_ends_poll_in_the_middle_of_a_tick(relay, fake):
    r2(relay, "slow-after-first", "--mode", "poll")
    process = subprocess.Popen([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "poll", "--every", "1s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=relay.env)
    deadline = time.monotonic() + 20
    while fake.calls.get("slow-after-first", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake.calls.get("slow-after-first", 0) >= 3, "the second tick is under way"
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    process.wait(timeout=10)
    assert time.monotonic() - started < 3, "SIGINT ends the tick at once"

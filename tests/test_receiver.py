"""The receiver end to end: the real binary over real HTTP, with the CLI on the same data dir.

Each test states a behaviour an operator or a customer relies on, and checks the status code,
the JSON body, and what landed (or did not land) on the embedded ingest queue.
"""

import datetime as dt
import json
import os
import socket
import subprocess
from pathlib import Path
import threading
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from support import (R2_ACCOUNT, RELAY_BIN, SIGN_BIN, Receiver, wait_for_config_change, cloudtrail_put_object, expected_job_id, r2_event, r2_notification,
                      s3_object_created)

JOB_FIELDS = {"schema", "job_id", "integration_id", "provider", "account", "region", "bucket", "key",
              "key_encoding", "size", "etag", "version_id", "sequencer", "action", "event_time", "received_at",
              "source_event_id", "route", "params", "output_prefix"}


def results(response):
    return response.json()["results"]


def only(response):
    (result,) = results(response)
    return result


# --- the happy path --------------------------------------------------------------------------

def test_a_signed_r2_batch_becomes_exactly_the_expected_ingest_jobs(receiver):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT)
    events = [r2_event("in/a.pdf", message_id="m1"), r2_event("in/b.pdf", message_id="m2")]
    response = receiver.post_batch(created["id"], created["secret"], events)

    assert response.status_code == 200
    assert [r["id"] for r in results(response)] == ["m1", "m2"]
    assert all(r["outcome"] == "accepted" and r["reason"] is None for r in results(response))

    jobs = receiver.jobs()
    assert [j["key"] for j in jobs] == ["in/a.pdf", "in/b.pdf"]
    job = jobs[0]
    assert set(job) == JOB_FIELDS
    assert job["schema"] == "ingest-job/v2"
    assert (job["route"], job["params"], job["output_prefix"]) == (None, {}, None), "the default route"
    assert job["integration_id"] == created["id"]
    assert job["provider"] == "r2" and job["bucket"] == "uploads" and job["account"] == R2_ACCOUNT
    assert job["source_event_id"] == "m1" and job["action"] == "PutObject" and job["size"] == 1024
    etag = events[0]["notification"]["object"]["eTag"]
    assert job["job_id"] == expected_job_id(created["id"], "uploads", "in/a.pdf", etag)
    assert results(response)[0]["job_id"] == job["job_id"]


def test_an_eventbridge_s3_event_becomes_a_job_keyed_on_its_version(receiver):
    created = receiver.create("s3", "docs", "--account", "123456789012", "--region", "eu-west-1")
    event = s3_object_created("reports/2026.pdf", version_id="3HL4kqtJlcpXroDTDmJ", etag='"d41d8cd9-3"')
    response = receiver.post_eventbridge(created["id"], created["secret"], event)

    assert response.status_code == 200, response.text
    result = only(response)
    assert result["id"] == event["id"] and result["outcome"] == "accepted"
    (job,) = receiver.jobs()
    assert job["etag"] == "d41d8cd9-3", "quotes go, the multipart suffix stays"
    assert job["version_id"] == "3HL4kqtJlcpXroDTDmJ" and job["sequencer"] == "0062E99A88DC407460"
    assert job["job_id"] == expected_job_id(created["id"], "docs", "reports/2026.pdf", "3HL4kqtJlcpXroDTDmJ")


def test_a_cloudtrail_put_object_becomes_a_job(receiver):
    created = receiver.create("s3", "docs")
    response = receiver.post_eventbridge(created["id"], created["secret"], cloudtrail_put_object("org/x y.pdf"))
    assert response.status_code == 200 and only(response)["outcome"] == "accepted"
    (job,) = receiver.jobs()
    assert (job["key"], job["size"], job["version_id"], job["action"]) == ("org/x y.pdf", 4096, "ver9", "PutObject")
    assert job["key_encoding"] == "percent_encoded"


KEYS = [
    "in/with space.pdf",
    "in/plus+sign.pdf",
    "in/100% done.pdf",
    "in/a=b/c=d.pdf",
    "in/percent%20not-decoded%.pdf",
    "in/résumé – 日本語 ✓.pdf",
    "in/a+b c%2Bd/ü.pdf",
]


@pytest.mark.parametrize("key", KEYS)
def test_keys_come_out_exactly_as_the_object_has_them(receiver, key):
    # Each source writes the key its own way (R2 as is, S3 events form-encoded, CloudTrail
    # percent-encoded); every job names the object exactly as the bucket does.
    r2 = receiver.create("r2", "uploads")
    s3 = receiver.create("s3", "docs")
    assert only(receiver.post_batch(r2["id"], r2["secret"], [r2_event(key)]))["outcome"] == "accepted"
    assert only(receiver.post_eventbridge(s3["id"], s3["secret"], s3_object_created(key)))["outcome"] == "accepted"
    trail = cloudtrail_put_object(key, version_id="other-version")
    assert only(receiver.post_eventbridge(s3["id"], s3["secret"], trail))["outcome"] == "accepted"
    jobs = receiver.jobs()
    assert [j["key"] for j in jobs] == [key, key, key]
    assert [j["key_encoding"] for j in jobs] == ["exact", "form_urlencoded", "percent_encoded"]


@pytest.mark.parametrize("raw_key", ["raw/2023-08-08T14:03:40.532432.zip", "in/my report.pdf", "in/100%.pdf",
                                     "in/a%zz.pdf", "in/résumé.pdf"])
def test_an_s3_key_no_encoder_could_have_written_is_taken_exactly(receiver, raw_key):
    # A colon, a space, a lone %, non-ASCII: not URL-encoded text, so the key is the object's own.
    s3 = receiver.create("s3", "docs")
    response = receiver.post_eventbridge(s3["id"], s3["secret"], s3_object_created("", raw_key=raw_key))
    assert response.status_code == 200 and only(response)["outcome"] == "accepted"
    (job,) = receiver.jobs()
    assert (job["key"], job["key_encoding"]) == (raw_key, "exact")


def test_a_redelivered_batch_is_answered_duplicate_and_enqueues_nothing_more(receiver):
    created = receiver.create()
    events = [r2_event("in/a.pdf", message_id="m1")]
    first = only(receiver.post_batch(created["id"], created["secret"], events))
    second = only(receiver.post_batch(created["id"], created["secret"], events))
    assert first["outcome"] == "accepted"
    assert (second["outcome"], second["reason"]) == ("duplicate", "duplicate")
    assert second["job_id"] == first["job_id"]
    assert len(receiver.jobs()) == 1


def test_the_same_object_twice_in_one_batch_is_one_job(receiver):
    created = receiver.create()
    same = r2_notification("in/a.pdf", etag="e1")
    events = [{"id": "m1", "notification": same}, {"id": "m2", "notification": same}]
    answer = results(receiver.post_batch(created["id"], created["secret"], events))
    assert [r["outcome"] for r in answer] == ["accepted", "duplicate"]
    assert len(receiver.jobs()) == 1


def test_a_new_version_of_the_same_key_is_a_new_job(receiver):
    created = receiver.create()
    events = [r2_event("in/a.pdf", etag="v1"), r2_event("in/a.pdf", etag="v2")]
    answer = results(receiver.post_batch(created["id"], created["secret"], events))
    assert [r["outcome"] for r in answer] == ["accepted", "accepted"]
    assert len({j["job_id"] for j in receiver.jobs()}) == 2


def test_a_redelivered_eventbridge_event_is_a_200_duplicate(receiver):
    created = receiver.create("s3", "docs")
    event = s3_object_created("a.pdf")
    assert receiver.post_eventbridge(created["id"], created["secret"], event).status_code == 200
    again = receiver.post_eventbridge(created["id"], created["secret"], event)
    assert again.status_code == 200 and only(again)["outcome"] == "duplicate"
    assert len(receiver.jobs()) == 1


# --- every per-event reason ------------------------------------------------------------------

@pytest.mark.parametrize("create_args, event_kwargs, key, reason", [
    (["--account", R2_ACCOUNT], {"account": "someone_else"}, "a.pdf", "account_mismatch"),
    ([], {"bucket": "another-bucket"}, "a.pdf", "bucket_mismatch"),
    (["--mode", "poll"], {}, "a.pdf", "mode_mismatch"),
])
def test_events_for_another_account_bucket_or_mode_are_rejected(receiver, create_args, event_kwargs, key, reason):
    created = receiver.create("r2", "uploads", *create_args)
    response = receiver.post_batch(created["id"], created["secret"], [r2_event(key, **event_kwargs)])
    assert response.status_code == 200
    assert (only(response)["outcome"], only(response)["reason"]) == ("rejected", reason)
    assert receiver.jobs() == []
    logged = [l for l in receiver.log_lines() if l.get("message") == "event_rejected"]
    assert logged and logged[-1]["reason"] == reason and logged[-1]["key"] == key


@pytest.mark.parametrize("create_args, key, event_kwargs, reason", [
    ([], "a.pdf", {"action": "DeleteObject"}, "not_object_created"),
    ([], "a.pdf", {"action": "LifecycleDeletion"}, "not_object_created"),
    (["--prefix", "in/"], "out/a.pdf", {}, "prefix_filtered"),
    (["--suffix", ".pdf", "--suffix", ".png"], "in/a.txt", {}, "suffix_filtered"),
    (["--max-object-bytes", "1000"], "in/big.pdf", {"size": 1001}, "too_large"),
    (["--output-prefix", "results/"], "results/a.pdf", {}, "loop_protection"),
    ([], "in/folder/", {"size": 0}, "folder_marker"),
])
def test_filtered_events_are_skipped_with_their_reason_logged(receiver, create_args, key, event_kwargs, reason):
    created = receiver.create("r2", "uploads", *create_args)
    response = receiver.post_batch(created["id"], created["secret"], [r2_event(key, **event_kwargs)])
    assert response.status_code == 200
    result = only(response)
    assert (result["outcome"], result["reason"], result["job_id"]) == ("skipped", reason, None)
    assert receiver.jobs() == []
    skipped = [l for l in receiver.log_lines() if l.get("message") == "event_skipped"]
    assert skipped[-1]["reason"] == reason and skipped[-1]["key"] == key
    assert skipped[-1]["integration_id"] == created["id"] and skipped[-1]["bucket"] == "uploads"


def test_a_malformed_event_in_a_batch_is_rejected_alone(receiver):
    created = receiver.create()
    events = [{"id": "bad", "notification": {"action": "PutObject"}}, r2_event("in/ok.pdf", message_id="ok")]
    answer = results(receiver.post_batch(created["id"], created["secret"], events))
    assert [(r["id"], r["outcome"], r["reason"]) for r in answer] == [
        ("bad", "rejected", "malformed_event"), ("ok", "accepted", None)]
    assert len(receiver.jobs()) == 1


def test_eventbridge_statuses_carry_the_outcome(receiver):
    created = receiver.create("s3", "docs", "--suffix", ".pdf")
    skipped = receiver.post_eventbridge(created["id"], created["secret"], s3_object_created("a.txt"))
    assert skipped.status_code == 200 and only(skipped)["reason"] == "suffix_filtered"
    wrong_bucket = receiver.post_eventbridge(created["id"], created["secret"], s3_object_created("a.pdf", bucket="other-bucket"))
    assert wrong_bucket.status_code == 422 and only(wrong_bucket)["reason"] == "bucket_mismatch"
    broken = s3_object_created("a.pdf")
    del broken["detail"]["object"]
    malformed = receiver.post_eventbridge(created["id"], created["secret"], broken)
    assert malformed.status_code == 422 and only(malformed)["reason"] == "malformed_event"
    assert only(malformed)["id"] == broken["id"]
    assert receiver.jobs() == []


# --- paused ----------------------------------------------------------------------------------

def test_a_paused_integration_answers_retry_later_and_accepts_after_resume(receiver):
    s3 = receiver.create("s3", "docs")
    r2 = receiver.create("r2", "uploads")
    receiver.cli("integrations", "pause", s3["id"])
    receiver.cli("integrations", "pause", r2["id"])
    event = s3_object_created("a.pdf")
    batch = [r2_event("in/a.pdf", message_id="m1")]

    paused = receiver.post_eventbridge(s3["id"], s3["secret"], event)
    assert paused.status_code == 503
    assert int(paused.headers["retry-after"]) > 0
    assert (only(paused)["outcome"], only(paused)["reason"]) == ("retry_later", "paused")
    paused_batch = receiver.post_batch(r2["id"], r2["secret"], batch)
    assert paused_batch.status_code == 200 and only(paused_batch)["reason"] == "paused"
    assert receiver.jobs() == []

    receiver.cli("integrations", "resume", s3["id"])
    receiver.cli("integrations", "resume", r2["id"])
    wait_for_config_change()
    assert receiver.post_eventbridge(s3["id"], s3["secret"], event).status_code == 200
    assert only(receiver.post_batch(r2["id"], r2["secret"], batch))["outcome"] == "accepted"
    assert len(receiver.jobs()) == 2


# --- secrets ---------------------------------------------------------------------------------

def test_rotation_with_grace_accepts_old_and_new_secrets(receiver):
    created = receiver.create()
    rotated = receiver.cli("integrations", "rotate-secret", created["id"], "--grace", "1h")
    assert rotated["id"] == created["id"] and rotated["secret"] != created["secret"]
    assert rotated["integration"]["generation"] == 2
    old = receiver.post_batch(created["id"], created["secret"], [r2_event("in/old.pdf")])
    new = receiver.post_batch(created["id"], rotated["secret"], [r2_event("in/new.pdf")])
    assert (old.status_code, new.status_code) == (200, 200)
    assert len(receiver.jobs()) == 2


def test_a_second_rotation_keeps_the_grace_the_first_one_promised(receiver):
    created = receiver.create()
    second = receiver.cli("integrations", "rotate-secret", created["id"], "--grace", "24h")
    third = receiver.cli("integrations", "rotate-secret", created["id"], "--grace", "1h")
    assert third["integration"]["generation"] == 3
    assert [g["generation"] for g in third["integration"]["previous_generations"]] == [2, 1]
    for n, secret in enumerate((created["secret"], second["secret"], third["secret"])):
        response = receiver.post_batch(created["id"], secret, [r2_event(f"in/{n}.pdf")])
        assert response.status_code == 200, f"generation {n + 1}: {response.text}"
    receiver.cli("integrations", "rotate-secret", created["id"], "--now")
    wait_for_config_change()
    for secret in (created["secret"], second["secret"], third["secret"]):
        assert receiver.post_batch(created["id"], secret, [r2_event("in/x.pdf")]).status_code == 401


def test_an_s3_event_sent_to_an_r2_integration_is_rejected_not_enqueued(receiver):
    created = receiver.create("r2", "uploads")
    response = receiver.post_eventbridge(created["id"], created["secret"], s3_object_created("x.pdf", bucket="uploads"))
    assert response.status_code == 422
    assert (only(response)["outcome"], only(response)["reason"]) == ("rejected", "provider_mismatch")
    assert receiver.jobs() == []


def test_a_cli_change_reaches_a_running_receiver_within_the_staleness_bound(receiver):
    created = receiver.create()
    assert only(receiver.post_batch(created["id"], created["secret"], [r2_event("in/a.pdf")]))["outcome"] == "accepted"
    receiver.cli("integrations", "pause", created["id"])
    wait_for_config_change()
    paused = receiver.post_batch(created["id"], created["secret"], [r2_event("in/b.pdf")])
    assert only(paused)["reason"] == "paused"
    # A rotation's new secret works at once, remembered integration or not.
    rotated = receiver.cli("integrations", "rotate-secret", created["id"], "--now")
    assert receiver.post_batch(created["id"], rotated["secret"], [r2_event("in/c.pdf")]).status_code == 200
    wait_for_config_change()
    assert receiver.post_batch(created["id"], created["secret"], [r2_event("in/d.pdf")]).status_code == 401


def test_rotation_now_rejects_the_old_secret_at_once(receiver):
    created = receiver.create()
    rotated = receiver.cli("integrations", "rotate-secret", created["id"], "--now")
    old = receiver.post_batch(created["id"], created["secret"], [r2_event("in/old.pdf")])
    assert old.status_code == 401 and old.json()["error"] == "invalid_secret"
    assert receiver.post_batch(created["id"], rotated["secret"], [r2_event("in/new.pdf")]).status_code == 200
    assert [j["key"] for j in receiver.jobs()] == ["in/new.pdf"]


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_401(receiver, minutes):
    created = receiver.create()
    when = dt.datetime.now(tz=dt.timezone.utc) + dt.timedelta(minutes=minutes)
    response = receiver.post_batch(created["id"], created["secret"], [r2_event("a.pdf")], timestamp=when)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_secret"
    assert receiver.jobs() == []


def test_a_wrong_secret_or_no_credentials_is_401_with_a_json_body(receiver):
    created = receiver.create()
    other = receiver.create()
    wrong = receiver.post_batch(created["id"], other["secret"], [r2_event("a.pdf")])
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_secret"
    bare = requests.post(receiver.events_url(created["id"]), json={"events": []}, timeout=10)
    assert bare.status_code == 401 and bare.json()["error"] == "invalid_secret"
    bearer = receiver.post_eventbridge(created["id"], other["secret"], s3_object_created("a.pdf", bucket="uploads"))
    assert bearer.status_code == 401
    assert receiver.jobs() == []


def test_secrets_and_signatures_never_reach_the_logs(receiver):
    created = receiver.create()
    response = receiver.post_batch(created["id"], created["secret"], [r2_event("a.pdf")])
    signature_b64 = response.request.headers["webhook-signature"].split(",")[1]
    receiver.post_batch(created["id"], "whsec_" + "QUFBQUFBQUFBQUFBQUFBQQ==", [r2_event("b.pdf")])
    receiver.post_eventbridge(created["id"], created["secret"] + "x", s3_object_created("c", bucket="uploads"))
    logs = receiver.logs()
    assert created["id"] in logs, "the logs do name the integration"
    for secret_text in (created["secret"], created["secret"].removeprefix("whsec_"), signature_b64,
                        (receiver.data_dir / "master.key").read_text().strip()):
        assert secret_text not in logs


# --- request errors --------------------------------------------------------------------------

def test_an_unknown_integration_is_404_with_a_json_body(receiver):
    created = receiver.create()
    response = receiver.post_batch("int_doesnotexist", created["secret"], [r2_event("a.pdf")])
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_integration", "detail": "no integration int_doesnotexist"}


def test_malformed_json_is_400_with_a_json_body(receiver):
    created = receiver.create()
    response = receiver.post_batch(created["id"], created["secret"], None, body='{"events": [')
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "malformed_request" and response.json()["detail"]
    eventbridge = receiver.post_eventbridge(created["id"], created["secret"], b"not json at all")
    assert eventbridge.status_code == 400 and eventbridge.json()["error"] == "malformed_request"


def test_a_7_mb_body_is_413_and_a_body_just_under_6_mb_is_read(receiver):
    created = receiver.create()
    big = b"x" * (7 * 1024 * 1024)
    response = requests.post(receiver.events_url(created["id"]), data=big,
                             headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    refused = [l for l in receiver.log_lines() if l.get("message") == "request" and l.get("status") == 413]
    assert refused and refused[0]["error"] == "payload_too_large", "the refusal is logged too"
    padding = "x" * (6 * 1024 * 1024 - 1000)
    body = json.dumps({"events": [r2_event("in/a.pdf", message_id="m1")], "padding": padding})
    assert len(body) <= 6 * 1024 * 1024
    assert only(receiver.post_batch(created["id"], created["secret"], None, body=body))["outcome"] == "accepted"


def test_unknown_routes_and_methods_are_named(receiver):
    assert requests.get(f"{receiver.url}/nope", timeout=10).json()["error"] == "not_found"
    wrong_method = requests.get(receiver.events_url("int_x"), timeout=10)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


# --- logs and CLI ----------------------------------------------------------------------------

def test_every_request_is_one_json_log_line_with_counts(receiver):
    created = receiver.create("r2", "uploads", "--suffix", ".pdf")
    events = [r2_event("a.pdf"), r2_event("b.txt"), r2_event("c.pdf", bucket="other")]
    receiver.post_batch(created["id"], created["secret"], events)
    (line,) = [l for l in receiver.log_lines() if l.get("message") == "request" and l.get("sender") == "worker"]
    assert (line["status"], line["events"], line["accepted"], line["skipped"], line["rejected"]) == (200, 3, 1, 1, 1)
    assert line["integration_id"] == created["id"]


def test_the_cli_manages_integrations(receiver):
    created = receiver.create("s3", "docs", "--prefix", "in/", "--suffix", ".pdf", "--region", "eu-west-1")
    assert "Authorization" in created["setup"] and f"Bearer {created['secret']}" in created["setup"]
    assert created["events_url"] == receiver.events_url(created["id"])
    shown = receiver.cli("integrations", "show", created["id"])
    assert "secret" not in json.dumps(shown), "show never prints a secret"
    assert (shown["prefix"], shown["suffixes"], shown["status"]) == ("in/", [".pdf"], "active")
    assert receiver.cli("integrations", "set-mode", created["id"], "poll")["mode"] == "poll"
    assert [i["id"] for i in receiver.cli("integrations", "list")] == [created["id"]]
    receiver.cli("integrations", "delete", created["id"])
    assert receiver.cli("integrations", "list") == []
    missing = receiver.cli("integrations", "show", created["id"], check=False)
    assert missing.returncode == 1 and "no integration" in missing.stderr


def test_r2_create_prints_the_whole_wrangler_setup_in_order(receiver):
    created = receiver.create("r2", "uploads", "--prefix", "in/", "--suffix", ".pdf", "--suffix", ".png")
    setup = created["setup"]
    steps = [
        "npx wrangler queues create r2-events --message-retention-period-secs 1209600",
        "npx wrangler queues create r2-events-dlq --message-retention-period-secs 1209600",
        f'RECEIVER_URL = "{receiver.url}"',
        f'INTEGRATION_ID = "{created["id"]}"',
        'KEY_PREFIX = "in/"',
        'KEY_SUFFIXES = ".pdf,.png"',
        "npx wrangler deploy",
        f"printf '%s' '{created['secret']}' | npx wrangler secret put EVENT_SOURCE_SECRET",
        "npx wrangler r2 bucket notification list uploads",
        "npx wrangler r2 bucket notification create uploads --event-type object-create --queue r2-events"
        " --prefix=in/ --suffix=.pdf",
        "npx wrangler r2 bucket notification create uploads --event-type object-create --queue r2-events"
        " --prefix=in/ --suffix=.png",
        ".workers.dev/healthz",
    ]
    positions = [setup.find(step) for step in steps]
    assert -1 not in positions, [step for step, at in zip(steps, positions) if at == -1]
    assert positions == sorted(positions), "the queues first, the deploy before the bucket notifies"
    assert created["notification_rules"] == [line.strip() for line in setup.splitlines()
                                             if "notification create" in line]
    # The receiver here is http on this machine: no customer's side could reach it, and it says so.
    assert setup.startswith(f"WARNING: the receiver URL {receiver.url} cannot be given to a customer")


def test_r2_on_the_free_plan_keeps_its_retries_inside_a_day(receiver):
    created = receiver.create("r2", "uploads", "--cloudflare-plan", "free")
    setup = created["setup"]
    assert "npx wrangler queues create r2-events --message-retention-period-secs 86400" in setup
    assert 'MAX_RETRY_DELAY_SECONDS = "3600"' in created["wrangler_vars"]
    assert receiver.cli("integrations", "show", created["id"])["cloudflare_plan"] == "free"
    refused = receiver.cli("integrations", "create", "--provider", "s3", "--bucket", "docs",
                           "--cloudflare-plan", "free", check=False)
    assert refused.returncode == 1 and "--cloudflare-plan is for R2" in refused.stderr


def test_the_master_key_file_is_private(receiver):
    receiver.create()
    mode = (receiver.data_dir / "master.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_the_database_and_its_wal_and_shm_files_are_private(receiver):
    created = receiver.create()
    receiver.post_batch(created["id"], created["secret"], [r2_event("a.pdf")])
    names = ["relay.db", "relay.db-wal", "relay.db-shm"]
    modes = {name: (receiver.data_dir / name).stat().st_mode & 0o777 for name in names}
    assert modes == dict.fromkeys(names, 0o600), {name: oct(mode) for name, mode in modes.items()}


# --- signatures agree with the reference library both ways -----------------------------------

def test_our_signatures_verify_with_the_standardwebhooks_reference_library():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"events":[{"id":"m1","notification":{"key":"a b+c"}}]}'
    timestamp = int(dt.datetime.now(tz=dt.timezone.utc).timestamp())
    ours = subprocess.run([str(SIGN_BIN), secret, "msg_1", str(timestamp)], input=body.encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp), "webhook-signature": ours}
    Webhook(secret).verify(body, headers)  # raises on mismatch
    reference = Webhook(secret).sign("msg_1", dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc), body)
    assert ours == reference


@pytest.mark.parametrize("args, error", [
    (["integrations", "rotate-secret", "{id}", "--grace", "300000years"], "--grace"),
    (["integrations", "usage", "{id}", "--days", "4294967295"], "--days"),
    (["poll", "--overlap", "300000y"], "--overlap"),
    (["poll", "--every", "0s"], "--every"),
    (["serve", "--listen", "127.0.0.1:0", "--poll-every", "0s"], "--poll-every"),
    (["serve", "--listen", "127.0.0.1:0", "--read-timeout", "0s"], "--read-timeout"),
    (["serve", "--listen", "127.0.0.1:0", "--read-timeout", "1000000000y"], "--read-timeout"),
    (["integrations", "list", "--claim-lease", "0s"], "--claim-lease"),
])
def test_out_of_range_durations_are_named_errors_not_panics(receiver, args, error):
    created = receiver.create()
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir),
                             *[a.format(id=created["id"]) for a in args]],
                            capture_output=True, text=True, timeout=30, env=receiver.env)
    assert result.returncode == 1, result.stderr
    assert error in result.stderr and "panicked" not in result.stderr
    assert receiver.cli("integrations", "show", created["id"])["generation"] == 1


def test_a_usage_error_exits_2_as_the_cli_page_says(receiver):
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "integrations", "create"],
                            capture_output=True, text=True, timeout=30, env=receiver.env)
    assert result.returncode == 2 and "--provider" in result.stderr
    cli_page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert "exit code 2" in cli_page and "exit code 1" in cli_page


@pytest.mark.parametrize("args, error", [
    (["--provider", "r2", "--account", "127.0.0.1:9000/x"], "Cloudflare account id"),
    (["--provider", "r2", "--account", "evil.com/x"], "Cloudflare account id"),
    (["--provider", "r2", "--account", "x@y"], "Cloudflare account id"),
    (["--provider", "s3", "--account", "not-an-account"], "AWS account id"),
    (["--provider", "s3", "--region", "evil.com#"], "AWS Region"),
    (["--provider", "s3", "--region", "x/"], "AWS Region"),
    (["--provider", "s3", "--bucket", "docs\nx"], "naming rules"),
    (["--provider", "s3", "--bucket", "docs\u202e"], "naming rules"),
    (["--provider", "r2", "--receiver-url", "javascript:alert(1)"], "--receiver-url"),
    (["--provider", "r2", "--receiver-url", "https://user:pw@relay.example.com"], "--receiver-url"),
])
def test_create_refuses_what_would_reach_a_host_by_its_owners_rules(receiver, args, error):
    if "--bucket" not in args:
        args = [*args, "--bucket", "uploads"]
    result = receiver.cli("integrations", "create", *args, check=False)
    assert result.returncode == 1 and error in result.stderr, result.stderr
    assert "panicked" not in result.stderr
    assert receiver.cli("integrations", "list") == [], "nothing was created"


@pytest.mark.parametrize("role_arn", ["arn:awsX:evil:role/x", "arn:aws:iam::123456789012:role/x\ny",
                                      "arn:aws:iam::1234:role/x"])
def test_set_source_refuses_a_role_arn_iam_would_not_issue(receiver, role_arn):
    created = receiver.create("s3", "docs")
    result = receiver.cli("integrations", "set-source", created["id"], "--role-arn", role_arn, check=False)
    assert result.returncode == 1 and "not an IAM role ARN" in result.stderr, result.stderr
    assert "read_access" not in receiver.cli("integrations", "show", created["id"])


def test_an_event_whose_region_or_bucket_could_change_a_host_is_refused_by_name(receiver):
    created = receiver.create("s3", "docs")
    for region, bucket in [("evil.com#", "docs"), ("x/", "docs"), ("eu-west-1", "docs.evil.com/x")]:
        event = s3_object_created("a.pdf", bucket=bucket)
        event["region"] = region
        answer = receiver.post_eventbridge(created["id"], created["secret"], event)
        assert answer.status_code == 422 and only(answer)["reason"] == "malformed_event", (region, answer.text)
    assert receiver.jobs() == []


def test_text_output_never_carries_a_keys_control_characters(receiver):
    created = receiver.create("r2", "uploads")
    key = "in/a\nFORGED-ROW 0 uploads 1 x\u001b[31m\u0007\u202efdp.pdf"
    receiver.post_batch(created["id"], created["secret"], [r2_event(key)])
    assert [job["key"] for job in receiver.jobs()] == [key], "JSON stays exact"
    for args in (["jobs", "list"], ["integrations", "show", created["id"]],
                 ["events", "why", "--integration", created["id"], "--key", key]):
        text = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), *args],
                              capture_output=True, text=True, timeout=60, env=receiver.env, check=True).stdout
        assert not any(c in text for c in "\u001b\u0007\u202e"), (args, text)
        assert not any(line.startswith("FORGED-ROW") for line in text.splitlines()), (args, text)


def test_a_damaged_master_key_leaves_show_and_jobs_list_working_and_serve_refuses_to_start(receiver):
    created = receiver.create("s3", "docs")
    (receiver.data_dir / "master.key").write_text("zz-not-hex-QWERTY\n")
    shown = receiver.cli("integrations", "show", created["id"])
    assert shown["external_id"] is None and "master key" in shown["external_id_error"]
    assert receiver.cli("jobs", "list") == []
    serve = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "serve", "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30, env=receiver.env)
    assert serve.returncode == 1 and "master key" in serve.stderr and "QWERTY" not in serve.stderr


def test_objects_whose_fields_would_join_alike_are_two_jobs(receiver):
    # Joined with a separator, these two objects had one job id: the second was answered
    # `duplicate` and never enqueued.
    created = receiver.create("r2", "uploads")
    events = [r2_event("x.pdf\ny.pdf", etag="v"), r2_event("x.pdf", etag="y.pdf\nv")]
    response = receiver.post_batch(created["id"], created["secret"], events)
    assert [r["outcome"] for r in response.json()["results"]] == ["accepted", "accepted"]
    assert sorted(j["key"] for j in receiver.jobs()) == ["x.pdf", "x.pdf\ny.pdf"]


# --- hardening: limits, deadlines, hang-ups, several processes --------------------------------

def raw_request(receiver, head, body=b"", timeout=5):
    """Sends bytes as they are; returns the first HTTP answer once it is complete, or what came
    before the server closed the connection or the timeout passed (b"" for nothing)."""
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=timeout) as conn:
        conn.sendall(head + body)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    head_part, rest = answer.split(b"\r\n\r\n", 1)
                    length = [int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")]
                    if length and len(rest) >= length[0]:
                        return answer
        except (socket.timeout, ConnectionResetError):
            pass
        return answer


def test_a_body_declared_over_the_limit_is_answered_413_at_once(receiver):
    created = receiver.create()
    head = (f"POST /v1/integrations/{created['id']}/events HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {7 * 1024 * 1024}\r\ncontent-type: application/json\r\n\r\n").encode()
    # Only one byte of the 7 MB follows: the answer comes from the declared length alone.
    answer = raw_request(receiver, head, b"{", timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error":"payload_too_large"' in answer
    lines = [line for line in receiver.log_lines() if line.get("error") == "payload_too_large"]
    assert lines and lines[-1]["integration_id"] == created["id"], "logged like any refusal"


def test_a_stalled_head_is_cut_off_and_a_stalled_body_is_408(tmp_path):
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log", serve_args=["--read-timeout", "1s"])
    receiver.start()
    try:
        created = receiver.create()
        # Half a head, then nothing: the server closes the connection (before the client's own
        # 30 s timeout, which would raise here).
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as conn:
            conn.sendall(b"POST /v1/integrations/x/events HTTP/1.1\r\nHost: x\r\n")
            closed = conn.recv(65536)
        assert b"200" not in closed
        # A whole head and one byte of a 100-byte body: 408 request_timeout.
        head = (f"POST /v1/integrations/{created['id']}/events HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 100\r\n\r\n").encode()
        answer = raw_request(receiver, head, b"{", timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error":"request_timeout"' in answer
        assert receiver.jobs() == []
    finally:
        receiver.stop()


def read_until_closed(receiver, data, timeout=10):
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_heads_hyper_would_refuse_get_the_json_error_too(receiver):
    created = receiver.create()
    path = f"/v1/integrations/{created['id']}/events"
    # A 1 MB header field: 431 headers_too_large, as JSON, and logged like any refusal.
    huge = f"POST {path} HTTP/1.1\r\nHost: x\r\nx-big: {'a' * 1_000_000}\r\n\r\n".encode()
    answer = read_until_closed(receiver, huge)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answer.endswith(b"}") and b'"error":"headers_too_large"' in answer, answer[-300:]
    lines = [line for line in receiver.log_lines() if line.get("error") == "headers_too_large"]
    assert lines and lines[-1]["integration_id"] == created["id"]
    # A length that is not a number: 400 malformed_request, as JSON.
    answer = read_until_closed(receiver, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"error":"malformed_request"' in answer and b"Content-Length" in answer
    # A good request pipelined before a bad head is still answered, and first.
    good = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    bad = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
    answer = read_until_closed(receiver, good + bad)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 " in answer, answer
    assert answer.endswith(b"}") and b'"error":"malformed_request"' in answer, answer
    # And the server still answers well-formed requests afterwards.
    assert requests.get(f"{receiver.url}/healthz", timeout=10).status_code == 200


def test_a_batch_over_100_events_is_refused_whole_with_a_named_error(receiver):
    created = receiver.create()
    events = [r2_event(f"in/{i}.pdf") for i in range(101)]
    response = receiver.post_batch(created["id"], created["secret"], events)
    assert response.status_code == 413 and response.json()["error"] == "too_many_events"
    assert receiver.jobs() == []
    assert len([line for line in receiver.log_lines() if line.get("message", "").startswith("event_")]) == 0
    hundred = receiver.post_batch(created["id"], created["secret"], events[:100])
    assert hundred.status_code == 200 and len(receiver.jobs()) == 100


def test_the_bearer_scheme_is_case_insensitive(receiver):
    created = receiver.create("s3", "docs")
    body = json.dumps(s3_object_created("a.pdf"))
    for scheme in ("bearer", "BEARER"):
        headers = {"content-type": "application/json", "authorization": f"{scheme} {created['secret']}"}
        response = requests.post(receiver.events_url(created["id"]), data=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text


def test_an_existing_data_dir_and_the_database_become_private(tmp_path):
    data_dir = tmp_path / "relay"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    receiver = Receiver(data_dir, tmp_path / "serve.log")
    receiver.create()
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "relay.db").stat().st_mode & 0o777 == 0o600


def test_two_servers_and_the_cli_share_one_data_dir_under_load(tmp_path):
    # Transactions take the write lock at once (IMMEDIATE), so concurrent writers wait their turn
    # within the busy timeout instead of failing with "database is locked".
    data_dir = tmp_path / "relay"
    first = Receiver(data_dir, tmp_path / "a.log")
    second = Receiver(data_dir, tmp_path / "b.log")
    first.start()
    second.start()
    try:
        created = first.create()
        statuses, outcomes = [], []

        def sender(server, worker):
            for n in range(15):
                events = [r2_event(f"in/{worker}/{n}/{i}.pdf") for i in range(20)]
                response = server.post_batch(created["id"], created["secret"], events)
                statuses.append(response.status_code)
                outcomes.extend(r["outcome"] for r in response.json().get("results", []))

        def cli_writer():
            for n in range(10):
                first.cli("integrations", "create", "--provider", "r2", "--bucket", f"other-{n}")

        threads = [threading.Thread(target=sender, args=(server, w)) for w, server in enumerate([first, second] * 2)]
        threads.append(threading.Thread(target=cli_writer))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(statuses) == {200}, statuses
        assert set(outcomes) == {"accepted"} and len(outcomes) == 4 * 15 * 20
        assert len(first.jobs()) == 4 * 15 * 20
        logs = first.logs() + second.logs()
        assert "backend_unavailable" not in logs and "database is locked" not in logs
    finally:
        first.stop()
        second.stop()


def test_eight_concurrent_senders_of_the_same_objects_make_one_job_each(receiver):
    created = receiver.create()
    events = [r2_event(f"in/same/{i}.pdf", message_id=f"m{i}") for i in range(50)]
    answers = []

    def send():
        response = receiver.post_batch(created["id"], created["secret"], events)
        answers.append([r["outcome"] for r in response.json()["results"]])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8
    accepted = sum(outcomes.count("accepted") for outcomes in answers)
    duplicates = sum(outcomes.count("duplicate") for outcomes in answers)
    assert (accepted, duplicates) == (50, 7 * 50)
    assert sorted(j["key"] for j in receiver.jobs()) == sorted(e["notification"]["object"]["key"] for e in events)


def test_a_receiver_killed_mid_burst_and_restarted_makes_each_object_one_job(receiver):
    created = receiver.create()
    batches = [[r2_event(f"burst/{b}/{i}.pdf") for i in range(50)] for b in range(40)]
    answered = []

    def burst():
        for batch in batches:
            try:
                answered.append(receiver.post_batch(created["id"], created["secret"], batch).status_code)
            except requests.ConnectionError:
                answered.append(None)

    sender = threading.Thread(target=burst)
    sender.start()
    while len(answered) < 5:
        time.sleep(0.01)
    receiver.process.kill()  # SIGKILL: no shutdown, no flush
    receiver.process.wait()
    sender.join()
    receiver.log.close()
    receiver.process = None
    receiver.start()
    # Senders retry whatever was not answered; here everything is sent again.
    for batch in batches:
        response = receiver.post_batch(created["id"], created["secret"], batch)
        assert {r["outcome"] for r in response.json()["results"]} <= {"accepted", "duplicate"}
    keys = [job["key"] for job in receiver.jobs()]
    assert len(keys) == len(set(keys)) == 40 * 50, "every object exactly one job"
    print(f"\nkilled after {answered.count(200)} answered batches; "
          f"sent {40 * 50}, jobs {len(keys)}, duplicates {len(keys) - len(set(keys))}, "
          f"lost {40 * 50 - len(set(keys))}")


def test_an_unknown_integration_is_answered_404_before_its_body_is_read(receiver):
    head = (b"POST /v1/integrations/int_nobodyhasthis/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5000000\r\ncontent-type: application/json\r\n\r\n")
    # One byte of the 5 MB follows, and nothing more: the answer cannot have waited for it.
    started = time.monotonic()
    answer = raw_request(receiver, head, b"{", timeout=10)
    assert answer.startswith(b"HTTP/1.1 404") and b'"error":"unknown_integration"' in answer, answer[:200]
    assert time.monotonic() - started < 5, "answered before the read timeout (30 s)"


def test_bodies_share_a_budget_and_one_that_does_not_fit_is_retried_later(tmp_path):
    receiver = Receiver(tmp_path / "relay", tmp_path / "serve.log", serve_args=["--max-body-buffer-mib", "6"])
    receiver.start()
    try:
        created = receiver.create()
        path = f"/v1/integrations/{created['id']}/events"
        big = 6_000_000
        # A client holds most of the budget with a body it has not finished sending.
        holder = socket.create_connection(("127.0.0.1", receiver.port), timeout=30)
        holder.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode())
        holder.sendall(b"x" * (big - 10))
        time.sleep(1)
        body = b"y" * 1_000_000
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        busy = raw_request(receiver, head, body, timeout=10)
        assert busy.startswith(b"HTTP/1.1 503") and b"retry-after" in busy.lower(), busy[:300]
        assert b'"error":"backend_unavailable"' in busy
        # Once that body is in (and refused: it is not signed), the budget is free again.
        holder.sendall(b"x" * 10)
        assert holder.recv(65536).startswith(b"HTTP/1.1 401")
        holder.close()
        again = raw_request(receiver, head, body, timeout=10)
        assert again.startswith(b"HTTP/1.1 401"), again[:200]
    finally:
        receiver.stop()

"""Completeness over time: the ledger's horizon and the safety net, on the real binary against
moto (R2's path: ListObjectsV2 with the integration's token).

- A backfill or reconcile a month after the jobs were made (the ledger once forgot them after 30
  days) makes no second job; one past the horizon leaves the objects it cannot vouch for alone
  unless told `--past-horizon`. The CLI runs at a simulated date under libfaketime.
- A safety net (`set-mode ID event --safety-net 1h`) in `serve --poll-every`: with events for
  only some objects, one scheduled listing makes the rest, each logged `missed_by_events`; an
  event arriving after that is a duplicate.
"""

import json
import subprocess
import time
import uuid
from pathlib import Path

import libfaketime

from support import R2_ACCOUNT, RELAY_BIN, Receiver, r2_event
from test_poll import R2_KEY_ID, R2_SECRET, bucket, put

FAKETIME_LIB = Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1"


def at_offset(relay, days, *args):
    """The CLI, run `days` days from now (the system clock the binary reads is shifted; timers
    are not)."""
    env = {**relay.env, "LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"+{days}d",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", *args],
                            capture_output=True, text=True, timeout=300, env=env)
    out = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, out, result.stderr


def r2_with_token(relay, name):
    """An R2 integration for `name` that lists with its token: its id and its secret."""
    integration = relay.create("r2", name, "--account", R2_ACCOUNT)
    env = {**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET}
    subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "integrations", "set-source",
                    integration["id"], "--r2-access-key-id", R2_KEY_ID], check=True, env=env,
                   capture_output=True, timeout=60)
    return integration["id"], integration["secret"]


def uploaded_with_events(relay, s3, count):
    """An R2 integration whose `count` objects all arrived as events: `count` jobs."""
    name = f"hor-{uuid.uuid4().hex[:8]}"
    bucket(s3, name)
    relay.start()
    iid, secret = r2_with_token(relay, name)
    keys = [f"in/{i:02}.pdf" for i in range(count)]
    events = [r2_event(key, bucket=name, etag=put(s3, name, key)["ETag"].strip('"'), size=len(b"%PDF-1.7 hello"))
              for key in keys]
    answer = relay.post_batch(iid, secret, events)
    assert {r["outcome"] for r in answer.json()["results"]} == {"accepted"}, answer.text
    assert len(relay.jobs()) == count
    return iid


def test_the_simulated_clock_is_the_one_the_binary_reads(relay):
    # Without this, every assertion below could pass on an unshifted clock.
    integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    code, shown, stderr = at_offset(relay, 400, "integrations", "set-mode", integration["id"], "poll")
    assert code == 0, stderr
    updated = shown["updated_at"][:4]
    assert int(updated) >= time.gmtime().tm_year + 1, shown["updated_at"]


def test_a_backfill_and_a_reconcile_a_month_on_make_no_second_job(relay, s3):
    iid = uploaded_with_events(relay, s3, 20)
    code, done, stderr = at_offset(relay, 31, "backfill", iid)
    assert code == 0, stderr
    assert (done["tally"]["jobs"], done["tally"]["duplicates"]) == (0, 20)
    code, found, stderr = at_offset(relay, 31, "reconcile", iid)
    assert code == 0, stderr
    assert (found["with_job"], found["missing"], found["beyond_horizon"]) == (20, 0, 0)
    jobs = relay.jobs()
    assert len(jobs) == 20 and len({job["job_id"] for job in jobs}) == 20


def test_past_the_horizon_objects_are_left_alone_unless_asked_and_the_horizon_is_the_operators(relay, s3):
    iid = uploaded_with_events(relay, s3, 20)
    shown = relay.cli("integrations", "show", iid)
    assert shown["horizon_days"] == 400, "the default horizon"

    code, found, stderr = at_offset(relay, 401, "reconcile", iid)
    assert code == 0, stderr
    assert (found["with_job"], found["missing"], found["beyond_horizon"]) == (0, 0, 20)
    code, found, _ = at_offset(relay, 401, "reconcile", iid, "--past-horizon")
    assert code == 3 and found["missing"] == 20, "told to, it judges them"

    code, done, stderr = at_offset(relay, 401, "backfill", iid)
    assert code == 0, stderr
    assert done["tally"]["jobs"] == 0 and done["tally"]["skipped"] == {"beyond_horizon": 20}
    assert len(relay.jobs()) == 20, "nothing made of what the ledger cannot vouch for"

    # A longer horizon covers them again; one out of bounds is refused by name.
    code, _, stderr = at_offset(relay, 0, "integrations", "set-horizon", iid, "14")
    assert code == 1 and "15 to 3650 days" in stderr
    code, _, stderr = at_offset(relay, 0, "integrations", "set-horizon", iid, "800")
    assert code == 0, stderr
    code, found, _ = at_offset(relay, 401, "reconcile", iid)
    assert (code, found["with_job"], found["beyond_horizon"]) == (0, 20, 0)
    code, done, _ = at_offset(relay, 401, "backfill", iid, "--past-horizon")
    assert (code, done["tally"]["jobs"], done["tally"]["duplicates"]) == (0, 0, 20)


def test_a_safety_net_in_serve_makes_jobs_for_what_no_event_brought(tmp_path, aws_proxy, s3):
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}",
           "RELAY_R2_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env, serve_args=["--poll-every", "1s"])
    name = f"net-{uuid.uuid4().hex[:8]}"
    bucket(s3, name)
    iid, secret = r2_with_token(relay, name)
    # A safety net is for event mode: poll mode is listed on every tick already.
    refused = relay.cli("integrations", "set-mode", iid, "poll", "--safety-net", "1h", check=False)
    assert refused.returncode == 1 and "--safety-net is for event mode" in refused.stderr
    refused = relay.cli("integrations", "set-mode", iid, "event", "--safety-net", "1m", check=False)
    assert refused.returncode == 1 and "5 minutes to 7 days" in refused.stderr

    keys = [f"in/{i:02}.pdf" for i in range(10)]
    etags = {key: put(s3, name, key)["ETag"].strip('"') for key in keys}
    size = len(b"%PDF-1.7 hello")
    event = {key: r2_event(key, bucket=name, etag=etags[key], size=size) for key in keys}
    relay.start()
    try:
        arrived = keys[:6]
        answer = relay.post_batch(iid, secret, [event[key] for key in arrived])
        assert {r["outcome"] for r in answer.json()["results"]} == {"accepted"}
        assert len(relay.jobs()) == 6
        time.sleep(2)
        assert len(relay.jobs()) == 6, "event mode alone is not listed"

        shown = relay.cli("integrations", "set-mode", iid, "event", "--safety-net", "1h")
        assert shown["safety_net_secs"] == 3600
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(relay.jobs()) < 10:
            time.sleep(0.3)
        jobs = relay.jobs()
        assert sorted(job["key"] for job in jobs) == keys and len({j["job_id"] for j in jobs}) == 10

        missed = [line for line in relay.log_lines() if line.get("message") == "missed_by_events"]
        assert sorted(line["key"] for line in missed) == keys[6:]
        assert {line["integration_id"] for line in missed} == {iid}
        [tick] = [line for line in relay.log_lines() if line.get("message") == "poll_tick"]
        assert (tick["mode"], tick["missed_by_events"], tick["duplicates"]) == ("event", 4, 6)
        assert "4 missed by events" in tick["summary"]

        # The late event of an object the listing made a job of is a duplicate.
        late = relay.post_batch(iid, secret, [event[keys[9]]])
        assert late.json()["results"][0]["outcome"] == "duplicate"
        time.sleep(2)
        assert len([line for line in relay.log_lines() if line.get("message") == "poll_tick"]) == 1, \
            "not listed again within the hour"
        shown = relay.cli("integrations", "show", iid)
        assert shown["safety_net"]["missed_by_events"] == 4
        assert len(relay.jobs()) == 10
    finally:
        relay.stop()


def test_on_dynamodb_a_30_day_ledger_is_restamped_to_the_horizon_in_place(aws_receiver, aws_stack):
    relay = aws_receiver
    integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    events = [r2_event(f"k{i}.pdf") for i in range(30)]
    answer = relay.post_batch(integration["id"], integration["secret"], events)
    assert {r["outcome"] for r in answer.json()["results"]} == {"accepted"}
    ddb, table = aws_stack.dynamodb, aws_stack.ledger_table
    done = [item for item in ddb.scan(TableName=table)["Items"] if item.get("state", {}).get("S") == "done"]
    assert len(done) == 30
    day = 86_400
    for item in done:
        made = int(item["enqueued_at_ms"]["N"]) // 1000
        assert int(item["expires_at"]["N"]) == made + 400 * day, "a new job lasts the horizon"
        # As the releases before the horizon wrote it: 30 days after the job.
        ddb.update_item(TableName=table, Key={"job_id": item["job_id"]}, UpdateExpression="SET expires_at = :e",
                        ExpressionAttributeValues={":e": {"N": str(made + 30 * day)}})

    def expiries():
        items = ddb.scan(TableName=table)["Items"]
        return {int(i["expires_at"]["N"]) - int(i["enqueued_at_ms"]["N"]) // 1000
                for i in items if i.get("state", {}).get("S") == "done"}

    assert relay.cli("integrations", "restamp")["restamped"] == 30
    assert expiries() == {400 * day}
    assert relay.cli("integrations", "restamp")["restamped"] == 0, "idempotent"
    assert relay.cli("integrations", "set-horizon", integration["id"], "800")["restamped"] == 30
    assert expiries() == {800 * day}
    again = relay.post_batch(integration["id"], integration["secret"], events[:5])
    assert {r["outcome"] for r in again.json()["results"]} == {"duplicate"}

"""`reconcile` proves every object became a job: of 1,000 objects, 950 arrive as events and 50 never
do (the test simply does not send them); reconcile names exactly those 50 and exits 3; `--repair`
makes their 50 jobs; run again, it finds none missing and exits 0; no object has two jobs. On S3
through the read role (ListObjectVersions) and on R2's path (ListObjectsV2 with its token), both
against moto."""

import json
import subprocess
import uuid

import pytest

from support import R2_ACCOUNT, RELAY_BIN, r2_event, s3_object_created
from test_poll import ACCOUNT, R2_KEY_ID, R2_SECRET, REGION, ROLE_ARN, bucket, put, read_role

OBJECTS = 1000
LOST = 50


def run(relay, *args):
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", *args],
                            capture_output=True, text=True, timeout=600, env=relay.env)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else None), result.stderr


def check_reconcile(relay, iid, lost_keys, tmp_path):
    out = tmp_path / "missing.jsonl"
    code, found, stderr = run(relay, "reconcile", iid, "--out", str(out))
    assert code == 3, stderr
    assert (found["listed"], found["admitted"], found["with_job"], found["missing"]) == (OBJECTS, OBJECTS,
                                                                                       OBJECTS - LOST, LOST)
    assert sorted(o["key"] for o in found["missing_objects"]) == sorted(lost_keys)
    assert sorted(json.loads(line)["key"] for line in out.read_text().splitlines()) == sorted(lost_keys)
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(relay.jobs()) == OBJECTS - LOST, "reconcile alone makes no job"

    code, repaired, stderr = run(relay, "reconcile", iid, "--repair")
    assert code == 0, stderr
    assert (repaired["missing"], repaired["repaired"]) == (LOST, LOST)

    code, again, stderr = run(relay, "reconcile", iid)
    assert code == 0, stderr
    assert (again["with_job"], again["missing"], again["missing_objects"]) == (OBJECTS, 0, [])
    jobs = relay.jobs()
    assert len(jobs) == OBJECTS and len({job["job_id"] for job in jobs}) == OBJECTS, "no object has two jobs"
    assert {job["key"] for job in jobs} >= set(lost_keys)


def test_s3_reconcile_names_the_objects_whose_events_never_came_and_repairs_them(relay, s3, moto, tmp_path):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    bucket(s3, name, versioned=True)
    relay.start()
    integration = relay.create("s3", name, "--account", ACCOUNT, "--region", REGION)
    read_role(moto, integration["external_id"])
    relay.cli("integrations", "set-source", integration["id"], "--role-arn", ROLE_ARN)
    puts = {f"in/{i:04}.pdf": put(s3, name, f"in/{i:04}.pdf", body=f"object {i}".encode()) for i in range(OBJECTS)}
    keys = sorted(puts)
    lost = keys[::OBJECTS // LOST][:LOST]
    for key in keys:
        if key in lost:
            continue
        event = s3_object_created(key, bucket=name, version_id=puts[key]["VersionId"], etag=puts[key]["ETag"])
        answer = relay.post_eventbridge(integration["id"], integration["secret"], event)
        assert answer.status_code == 200, answer.text
    check_reconcile(relay, integration["id"], lost, tmp_path)


def test_r2_reconcile_names_the_objects_whose_events_never_came_and_repairs_them(relay, s3, tmp_path):
    name = f"rec-{uuid.uuid4().hex[:8]}"
    bucket(s3, name)
    relay.start()
    integration = relay.create("r2", name, "--account", R2_ACCOUNT)
    env = {**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET}
    subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "integrations", "set-source",
                    integration["id"], "--r2-access-key-id", R2_KEY_ID], env=env, check=True, capture_output=True)
    puts = {f"in/{i:04}.pdf": put(s3, name, f"in/{i:04}.pdf", body=f"object {i}".encode()) for i in range(OBJECTS)}
    keys = sorted(puts)
    lost = keys[::OBJECTS // LOST][:LOST]
    arrived = [r2_event(key, bucket=name, etag=puts[key]["ETag"].strip('"'), size=len(f"object {int(key[3:7])}"))
               for key in keys if key not in lost]
    for start in range(0, len(arrived), 100):
        answer = relay.post_batch(integration["id"], integration["secret"], arrived[start:start + 100])
        assert answer.status_code == 200
        assert {r["outcome"] for r in answer.json()["results"]} == {"accepted"}, answer.text
    check_reconcile(relay, integration["id"], lost, tmp_path)


@pytest.mark.parametrize("args, error", [(["--prefix", "elsewhere/"], "outside the integration's prefix")])
def test_reconcile_refuses_a_prefix_outside_the_integrations(relay, args, error):
    integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT, "--prefix", "in/")
    code, _, stderr = run(relay, "reconcile", integration["id"], *args)
    assert code == 1 and error in stderr


def test_on_aws_the_ledger_is_read_from_dynamodb_and_repairs_go_to_sqs(s3, aws_receiver, aws_stack, moto):
    from test_aws import drain
    relay = aws_receiver
    name = f"rec-{uuid.uuid4().hex[:8]}"
    bucket(s3, name, versioned=True)
    integration = relay.create("s3", name, "--account", ACCOUNT, "--region", REGION)
    read_role(moto, integration["external_id"])
    relay.cli("integrations", "set-source", integration["id"], "--role-arn", ROLE_ARN)
    puts = {f"k{i:02}.pdf": put(s3, name, f"k{i:02}.pdf", body=f"{i}".encode()) for i in range(20)}
    lost = ["k03.pdf", "k11.pdf", "k17.pdf"]
    for key, done in puts.items():
        if key not in lost:
            event = s3_object_created(key, bucket=name, version_id=done["VersionId"], etag=done["ETag"])
            assert relay.post_eventbridge(integration["id"], integration["secret"], event).status_code == 200
    code, found, stderr = run(relay, "reconcile", integration["id"])
    assert code == 3, stderr
    assert (found["with_job"], found["missing"]) == (17, 3)
    assert sorted(o["key"] for o in found["missing_objects"]) == lost
    code, repaired, stderr = run(relay, "reconcile", integration["id"], "--repair")
    assert code == 0 and repaired["repaired"] == 3, stderr
    jobs = drain(aws_stack)
    assert sorted(job["key"] for job in jobs) == sorted(puts), "each object once on SQS"

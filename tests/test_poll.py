"""Poll mode and backfill, end to end: the receiver's binary lists buckets in moto's S3.

- S3: the receiver assumes the customer's read role with the integration's external id (STS in
  moto), then lists with `ListObjectVersions`.
- R2: the same client pointed at an S3-compatible endpoint (`RELAY_R2_ENDPOINT_URL`, moto) with
  an R2 token's static keys, sealed in the store.

Every call goes through the counting proxy, which records which key signed it and what
`AssumeRole` asked for, and can refuse a listing or a role as AWS does.
"""

import json
import signal
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import requests

from support import AWS_TEST_ENV, R2_ACCOUNT, REGION, RELAY_BIN, Receiver, expected_job_id, s3_object_created

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/bucket-relay-read"

R2_KEY_ID = "R2KEYID0123456789ABCDEF0123456789"
R2_SECRET = "r2secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddccbbaa99887766554433221100"


def bucket(s3, name, versioned=False):
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def put(s3, name, key, body=b"%PDF-1.7 hello"):
    return s3.put_object(Bucket=name, Key=key, Body=body)


def read_role(moto, external_id):
    """The customer's read role, as terraform/modules/s3-source makes it (moto does not enforce
    the trust policy; the proxy's record shows what we asked STS for)."""
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{moto}", region_name=REGION)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
    iam.create_role(RoleName="bucket-relay-read", AssumeRolePolicyDocument=json.dumps(trust))


def cli(relay, *args, check=True):
    """Runs the CLI; returns (exit code, stdout JSON or text, stderr log lines)."""
    result = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", *args],
                            capture_output=True, text=True, timeout=300, env=relay.env)
    if check and result.returncode != 0:
        raise AssertionError(f"bucket-relay {' '.join(args)} failed: {result.stderr}")
    try:
        out = json.loads(result.stdout)
    except json.JSONDecodeError:
        out = result.stdout
    logs = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return result.returncode, out, logs, result.stderr


def s3_integration(relay, moto, name="docs", *extra):
    integration = relay.create("s3", name, "--account", ACCOUNT, "--region", REGION, *extra)
    external_id = integration["external_id"]
    read_role(moto, external_id)
    relay.cli("integrations", "set-source", integration["id"], "--role-arn", ROLE_ARN)
    return integration["id"], external_id


def jobs_in(relay):
    """(job count, distinct job ids) on the embedded queue, read straight from the file."""
    with sqlite3.connect(f"file:{relay.data_dir / 'relay.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*), count(DISTINCT job_id) FROM jobs").fetchone()


def test_a_poll_tick_enqueues_new_objects_skips_with_a_reason_and_never_twice(relay, s3, moto, aws_proxy):
    bucket(s3, "docs", versioned=True)
    integration_id, external_id = s3_integration(relay, moto, "docs", "--suffix", ".pdf", "--mode", "poll")
    shown = relay.cli("integrations", "show", integration_id)
    assert shown["external_id"] == external_id and external_id.startswith("brx-")
    assert shown["read_access"] == {"kind": "assume_role", "role_arn": ROLE_ARN}

    a = put(s3, "docs", "in/a.pdf")
    put(s3, "docs", "in/b.txt")
    c = put(s3, "docs", "in/c d+e.pdf")
    # One line per skipped object is a DEBUG line: a big listing counts them per page instead.
    relay.env["RELAY_LOG"] = "bucket_relay=debug,info"
    code, ticks, logs, _ = cli(relay, "poll", "--integration", integration_id)
    assert code == 0, logs
    [tick] = ticks
    assert tick["ok"] and tick["tally"]["listed"] == 3 and tick["tally"]["jobs"] == 2
    assert tick["tally"]["skipped"] == {"suffix_filtered": 1}
    [skip] = [line for line in logs if line.get("message") == "object_skipped"]
    assert (skip["reason"], skip["key"]) == ("suffix_filtered", "in/b.txt")
    [summary] = [line for line in logs if line.get("message") == "poll_tick"]
    assert summary["summary"] == "listed 3 objects under prefix="
    assert (summary["jobs"], summary["skipped"], summary["skipped_by_reason"]) == (2, 1, "suffix_filtered=1")

    # The same job id an event for each version would have had: the version id S3 gave it.
    jobs = {job["key"]: job for job in relay.jobs()}
    assert set(jobs) == {"in/a.pdf", "in/c d+e.pdf"}
    for key, put_answer in (("in/a.pdf", a), ("in/c d+e.pdf", c)):
        assert jobs[key]["version_id"] == put_answer["VersionId"]
        assert jobs[key]["job_id"] == expected_job_id(integration_id, "docs", key, put_answer["VersionId"])
        assert jobs[key]["action"] == "ObjectListed"

    # The role was assumed with our external id, and the listing signed with its session's key.
    [(_, assume)] = aws_proxy.calls("sts", "AssumeRole")[-1:]
    assert f"ExternalId={external_id}" in assume and "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012" in assume
    listing_keys = {key for key, _ in aws_proxy.calls("s3", "ListObjectVersions")}
    assert listing_keys and AWS_TEST_ENV["AWS_ACCESS_KEY_ID"] not in listing_keys

    # A new process (a restart) ticks again: nothing twice, and the next upload within one tick.
    code, [tick], _, _ = cli(relay, "poll")
    assert code == 0 and tick["tally"]["jobs"] == 0 and tick["tally"]["duplicates"] == 2
    put(s3, "docs", "in/f.pdf")
    code, [tick], _, _ = cli(relay, "poll")
    assert tick["tally"]["jobs"] == 1
    assert jobs_in(relay) == (3, 3)


def test_an_object_seen_by_its_event_and_by_a_listing_is_one_job(tmp_path, relay, s3, moto):
    bucket(s3, "docs", versioned=True)
    relay.start()
    integration = relay.create("s3", "docs", "--account", ACCOUNT, "--region", REGION)
    read_role(moto, integration["external_id"])
    relay.cli("integrations", "set-source", integration["id"], "--role-arn", ROLE_ARN)
    seen = put(s3, "docs", "report 1.pdf")
    put(s3, "docs", "report 2.pdf")  # its event was lost
    event = s3_object_created("report 1.pdf", bucket="docs", version_id=seen["VersionId"], etag=seen["ETag"])
    answer = relay.post_eventbridge(integration["id"], integration["secret"], event)
    assert answer.status_code == 200 and answer.json()["results"][0]["outcome"] == "accepted"

    code, done, _, _ = cli(relay, "backfill", integration["id"])
    assert code == 0
    assert (done["tally"]["jobs"], done["tally"]["duplicates"]) == (1, 1)
    assert sorted(job["key"] for job in relay.jobs()) == ["report 1.pdf", "report 2.pdf"]


def test_r2_is_listed_with_the_sealed_token_which_is_never_shown_logged_or_stored(relay, s3, aws_proxy):
    bucket(s3, "uploads")
    integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT, "--mode", "poll", "--suffix", ".pdf")
    env = {**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET}
    set_source = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "integrations", "set-source",
                                 integration["id"], "--r2-access-key-id", R2_KEY_ID],
                                capture_output=True, text=True, env=env, timeout=60)
    assert set_source.returncode == 0, set_source.stderr
    puts = {key: put(s3, "uploads", key) for key in ("a.pdf", "b.pdf", "notes.txt")}

    code, checked, _, _ = cli(relay, "integrations", "test", integration["id"])
    assert code == 0 and checked["ok"]
    code, [tick], logs, stderr = cli(relay, "poll")
    assert code == 0 and tick["tally"]["jobs"] == 2 and tick["tally"]["skipped"] == {"suffix_filtered": 1}
    jobs = {job["key"]: job for job in relay.jobs()}
    etag = puts["a.pdf"]["ETag"].strip('"')
    assert jobs["a.pdf"]["etag"] == etag and jobs["a.pdf"]["version_id"] is None
    assert jobs["a.pdf"]["job_id"] == expected_job_id(integration["id"], "uploads", "a.pdf", etag)
    assert {key for key, _ in aws_proxy.calls("s3", "ListObjectsV2")} == {R2_KEY_ID}

    # Nowhere: not in show / list, not in the logs or errors, not in the database file.
    outputs = [set_source.stdout, set_source.stderr, stderr, json.dumps(logs),
               json.dumps(relay.cli("integrations", "show", integration["id"])),
               json.dumps(relay.cli("integrations", "list"))]
    for output in outputs:
        assert R2_SECRET not in output and R2_KEY_ID not in output
    for path in relay.data_dir.iterdir():
        data = path.read_bytes()
        assert R2_SECRET.encode() not in data and R2_KEY_ID.encode() not in data, path


def test_at_trace_level_no_access_key_id_token_or_external_id_reaches_the_log(relay, s3, moto, aws_proxy):
    bucket(s3, "uploads")
    bucket(s3, "docs")
    r2 = relay.create("r2", "uploads", "--account", R2_ACCOUNT, "--mode", "poll")
    env = {**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET}
    subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "integrations", "set-source",
                    r2["id"], "--r2-access-key-id", R2_KEY_ID], env=env, check=True, capture_output=True)
    s3_id, external_id = s3_integration(relay, moto, "docs", "--mode", "poll")
    put(s3, "uploads", "a.pdf")
    put(s3, "docs", "b.pdf")
    traced = subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", "poll"],
                            capture_output=True, text=True, timeout=300, env={**relay.env, "RELAY_LOG": "trace"})
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert {tick["id"] for tick in json.loads(traced.stdout) if tick["tally"]["jobs"] == 1} == {r2["id"], s3_id}
    for secret in (R2_KEY_ID, R2_SECRET, external_id):
        assert secret not in traced.stderr, secret[:6]


def test_the_sealed_token_is_not_in_dynamodb_either(tmp_path, aws_stack, aws_proxy):
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log",
                     env={**aws_stack.receiver_env(aws_proxy.port), "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET})
    integration = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    relay.cli("integrations", "set-source", integration["id"], "--r2-access-key-id", R2_KEY_ID)
    items = aws_stack.dynamodb.scan(TableName=aws_stack.integrations_table)["Items"]
    assert len(items) == 1 and "read_access" in items[0]
    assert R2_SECRET not in json.dumps(items) and R2_KEY_ID not in json.dumps(items)
    assert relay.cli("integrations", "show", integration["id"])["read_access"] == {"kind": "sealed_keys"}


def test_each_read_access_failure_has_its_name(relay, s3, moto, aws_proxy):
    integration = relay.create("s3", "missing-bucket", "--account", ACCOUNT, "--region", REGION)
    iid = integration["id"]

    def failure():
        code, out, _, _ = cli(relay, "integrations", "test", iid, check=False)
        assert code == 1 and out["ok"] is False
        return out["error"]

    assert failure() == "no_read_access"
    read_role(moto, integration["external_id"])
    relay.cli("integrations", "set-source", iid, "--role-arn", ROLE_ARN)
    assert failure() == "no_such_bucket"
    bucket(s3, "missing-bucket")
    aws_proxy.deny("ListObjectVersions")
    assert failure() == "list_denied"
    aws_proxy.deny("AssumeRole")
    assert failure() == "assume_role_denied"
    aws_proxy.heal()
    code, out, _, _ = cli(relay, "integrations", "test", iid)
    assert out["ok"]
    # A poll tick of an event-mode integration, and a backfill of a paused one, are named too.
    code, _, _, stderr = cli(relay, "poll", "--integration", iid, check=False)
    assert code == 1 and "event mode" in stderr
    relay.cli("integrations", "pause", iid)
    code, _, _, stderr = cli(relay, "backfill", iid, check=False)
    assert code == 1 and "paused" in stderr


def test_serve_runs_poll_ticks_in_process(tmp_path, aws_proxy, s3, moto):
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}"}
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env, serve_args=["--poll-every", "1s"])
    bucket(s3, "docs")
    s3_integration(relay, moto, "docs", "--mode", "poll")
    relay.start()
    try:
        put(s3, "docs", "late.pdf")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not relay.jobs():
            time.sleep(0.3)
        assert [job["key"] for job in relay.jobs()] == ["late.pdf"]
        assert any(line.get("message") == "poll_tick" for line in relay.log_lines())
    finally:
        relay.stop()


def put_many(moto, name, keys):
    """Uploads `keys` straight to moto (unsigned PUTs: moto does not check signatures), 4 at a
    time: moto spends about 3 ms on each, whoever sends it."""
    local = threading.local()

    def one(key):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        assert session.put(f"http://127.0.0.1:{moto}/{name}/{key}", data=b"x", timeout=30).status_code == 200

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, keys))


def r2_integration(relay, name, *extra):
    integration = relay.create("r2", name, "--account", R2_ACCOUNT, *extra)
    env = {**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET}
    subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "integrations", "set-source",
                    integration["id"], "--r2-access-key-id", R2_KEY_ID], check=True, env=env,
                   capture_output=True, timeout=60)
    return integration["id"]


def test_a_backfill_of_20000_objects_survives_a_kill_and_yields_exactly_20000_jobs(relay, s3, moto):
    # R2's path (ListObjectsV2): moto answers each ListObjectVersions page in time that grows
    # with the bucket, which would make this test minutes longer; the S3 path is the same loop.
    bucket(s3, "archive")
    put_many(moto, "archive", [f"y2025/{i:06d}.pdf" for i in range(20_000)])
    integration_id = r2_integration(relay, "archive")

    code, dry, _, _ = cli(relay, "backfill", integration_id, "--dry-run")
    assert code == 0 and dry["tally"]["jobs"] == 20_000 and jobs_in(relay) == (0, 0)

    first = subprocess.Popen([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", "backfill", integration_id],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=relay.env)
    for line in first.stderr:
        if '"backfill_progress"' in line and json.loads(line)["listed"] >= 10_000:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    done_before, _ = jobs_in(relay)
    assert 10_000 <= done_before < 20_000

    code, resumed, _, _ = cli(relay, "backfill", integration_id)
    assert code == 0 and resumed["resumed_after"] >= "y2025/009000.pdf", "it resumed, not started over"
    assert jobs_in(relay) == (20_000, 20_000)

    code, again, _, _ = cli(relay, "backfill", integration_id)
    assert code == 0 and again["resumed_after"] is None
    assert (again["tally"]["jobs"], again["tally"]["duplicates"]) == (0, 20_000)
    assert jobs_in(relay) == (20_000, 20_000)

"""The master key over its whole life, end to end with the real binary: `keys rotate`, `reseal`,
`reissue-external-ids`, `retire` and `status`, on the embedded backend (a key file) and on AWS
(Secrets Manager and DynamoDB on moto).

What a customer holds never breaks: every secret, external id and sealed R2 token issued under
an old version keeps working until it is moved, and `retire` refuses by name while anything
still depends on the version."""

import base64
import hashlib
import hmac
import json
import os
import signal
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

from support import R2_ACCOUNT, RELAY_BIN, Receiver, r2_event, s3_object_created
from test_poll import R2_KEY_ID, R2_SECRET, bucket, put, s3_integration


def run(relay, *args, env=None):
    return subprocess.run([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", *args],
                          capture_output=True, text=True, timeout=120, env=env or relay.env)


def keys(relay, *args):
    result = run(relay, "keys", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status(relay):
    return {v["version"]: v for v in keys(relay, "status")["versions"]}


def counts(row):
    return row["secrets"], row["external_ids"], row["sealed_tokens"]


def set_token(relay, integration_id):
    result = run(relay, "integrations", "set-source", integration_id, "--r2-access-key-id", R2_KEY_ID,
                 env={**relay.env, "RELAY_R2_SECRET_ACCESS_KEY": R2_SECRET})
    assert result.returncode == 0, result.stderr


def accepted(relay, integration_id, secret, key):
    answer = relay.post_batch(integration_id, secret, [r2_event(key)])
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]["outcome"]


def test_a_rotation_breaks_nothing_and_retire_waits_for_every_dependent(relay, s3, moto, aws_proxy):
    bucket(s3, "uploads")
    put(s3, "uploads", "a.pdf")
    key_file = relay.data_dir / "master.key"
    r2 = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    set_token(relay, r2["id"])
    s3_id, external_id = s3_integration(relay, moto, "docs")
    plain = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    before = key_file.read_text()
    assert len(before.strip()) == 64, "today's format: one key in hex"
    assert counts(status(relay)[1]) == (3, 1, 1) and keys(relay, "status")["current"] == 1
    relay.start()
    assert accepted(relay, r2["id"], r2["secret"], "in/1.pdf") == "accepted"

    rotated = keys(relay, "rotate")
    assert (rotated["previous"], rotated["current"]) == (1, 2)
    ring = json.loads(key_file.read_text())
    assert ring["current"] == 2 and sorted(ring["keys"]) == ["1", "2"]
    assert ring["keys"]["1"] == before.strip(), "version 1 is the key it was"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # Everything issued under v1 still works, in the running receiver too; new ones use v2 (the
    # receiver reads the keyring again for a version it has not seen).
    assert accepted(relay, r2["id"], r2["secret"], "in/2.pdf") == "accepted"
    fresh = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
    assert relay.cli("integrations", "show", fresh["id"])["key_version"] == 2
    assert accepted(relay, fresh["id"], fresh["secret"], "in/3.pdf") == "accepted"
    assert relay.cli("integrations", "show", s3_id)["external_id"] == external_id
    assert relay.cli("integrations", "test", r2["id"])["ok"], "the token sealed under v1 opens"

    refused = run(relay, "keys", "retire", "v1")
    assert refused.returncode == 1 and "v1 is still used: 3 secrets, 1 external ids, 1 sealed tokens" in refused.stderr
    assert json.loads(key_file.read_text()) == ring, "a refused retire changes nothing"

    resealed = keys(relay, "reseal")
    assert (resealed["resealed"], resealed["already_current"], resealed["unreadable"]) == (1, 0, [])
    assert keys(relay, "reseal")["resealed"] == 0, "idempotent"
    assert relay.cli("integrations", "test", r2["id"])["ok"], "the resealed token opens"
    assert counts(status(relay)[1]) == (3, 1, 0)

    # The secrets move at each integration's next rotation; the external id when reissued.
    rotated_secrets = {}
    for integration_id in (r2["id"], s3_id, plain["id"]):
        rotated_secrets[integration_id] = relay.cli("integrations", "rotate-secret", integration_id, "--now")["secret"]
    assert counts(status(relay)[1]) == (0, 1, 0)
    reissued = keys(relay, "reissue-external-ids")["reissued"]
    assert [r["id"] for r in reissued] == [s3_id] and reissued[0]["external_id"] != external_id
    assert relay.cli("integrations", "show", s3_id)["external_id"] == reissued[0]["external_id"]
    assert counts(status(relay)[1]) == (0, 0, 0)

    retired = keys(relay, "retire", "v1")
    assert retired["retired"] == 1 and not retired["forced"]
    assert sorted(json.loads(key_file.read_text())["keys"]) == ["2"]
    assert 1 not in status(relay)
    assert accepted(relay, r2["id"], rotated_secrets[r2["id"]], "in/4.pdf") == "accepted"
    assert relay.cli("integrations", "test", r2["id"])["ok"]
    # The key material appears in no output or log line.
    for key in ring["keys"].values():
        assert key not in relay.logs() and key not in json.dumps(status(relay))


def test_a_key_in_today_s_format_keeps_working_unchanged(receiver):
    key_hex = os.urandom(32).hex()
    receiver.stop()
    receiver.data_dir.mkdir(parents=True, exist_ok=True)
    key_file = receiver.data_dir / "master.key"
    key_file.write_text(key_hex + "\n")
    key_file.chmod(0o600)
    receiver.start()
    created = receiver.create("r2", "uploads")
    # The secret is the documented derivation from the hex key: version 1.
    digest = hmac.new(bytes.fromhex(key_hex), f"event-source-secret/v1/{created['id']}/1".encode(),
                      hashlib.sha256).digest()
    assert created["secret"] == "whsec_" + base64.b64encode(digest).decode()
    assert accepted(receiver, created["id"], created["secret"], "a.pdf") == "accepted"
    for args in (("keys", "status"), ("keys", "reseal"), ("integrations", "show", created["id"])):
        assert run(receiver, *args).returncode == 0
    assert key_file.read_text() == key_hex + "\n", "only `keys rotate` rewrites the file"


def test_a_reseal_killed_halfway_leaves_every_token_readable_and_a_rerun_finishes(relay):
    count = 80
    def make(_):
        created = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
        set_token(relay, created["id"])
        return created["id"]
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(make, range(count)))
    keys(relay, "rotate")

    process = subprocess.Popen([str(RELAY_BIN), "--data-dir", str(relay.data_dir), "--json", "keys", "reseal"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=relay.env)
    for line in process.stderr:
        if '"reseal_progress"' in line:
            process.send_signal(signal.SIGSTOP)
            break
    try:
        halfway = status(relay)
        on_new = halfway[2]["sealed_tokens"]
        assert 0 < on_new < count, f"stopped after {on_new} of {count}"
        assert halfway[1]["sealed_tokens"] + on_new == count
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    for integration_id in ids[:3] + ids[-3:]:
        show = relay.cli("integrations", "show", integration_id)
        assert show["read_access"] == {"kind": "sealed_keys"}
    again = keys(relay, "reseal")
    assert again["resealed"] == count - on_new and again["already_current"] == on_new and again["unreadable"] == []
    assert status(relay)[1]["sealed_tokens"] == 0


def test_rotate_with_a_grace_moves_every_secret_and_keeps_the_old_ones_for_the_grace(receiver):
    a = receiver.create("r2", "uploads")
    b = receiver.create("s3", "docs")
    rotated = keys(receiver, "rotate", "--grace", "1h")
    issued = {s["id"]: s["secret"] for s in rotated["secrets"]}
    assert sorted(issued) == sorted([a["id"], b["id"]])
    assert issued[a["id"]] != a["secret"]
    # Both the old and the new secret verify during the grace; the old ones still count on v1.
    assert accepted(receiver, a["id"], a["secret"], "old.pdf") == "accepted"
    assert accepted(receiver, a["id"], issued[a["id"]], "new.pdf") == "accepted"
    by_version = status(receiver)
    assert counts(by_version[1]) == (2, 0, 0) and counts(by_version[2]) == (2, 0, 0)
    show = receiver.cli("integrations", "show", a["id"])
    assert show["key_version"] == 2 and show["previous_generations"][0]["generation"] == 1
    # The text names the next steps, and never a key.
    text = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "keys", "status"],
                          capture_output=True, text=True, env=receiver.env).stdout
    assert "v1 still used by" in text


def test_retire_force_after_a_compromise_names_what_each_integration_must_do(receiver):
    created = receiver.create("r2", "uploads")
    keys(receiver, "rotate")
    forced = keys(receiver, "retire", "v1", "--force")
    assert forced["forced"]
    steps = " ".join(forced["must_act"][created["id"]])
    assert f"rotate-secret {created['id']} --now" in steps
    # A running receiver drops a retired version within a minute; a restart at once. The old
    # secret no longer verifies; a rotated one does.
    receiver.restart()
    assert receiver.post_batch(created["id"], created["secret"], [r2_event("a.pdf")]).status_code == 401
    secret = receiver.cli("integrations", "rotate-secret", created["id"], "--now")["secret"]
    assert accepted(receiver, created["id"], secret, "b.pdf") == "accepted"
    current = run(receiver, "keys", "retire", "v2")
    assert current.returncode == 1 and "is the current one" in current.stderr


def test_on_aws_the_keyring_lives_in_secrets_manager(tmp_path, aws_stack, aws_proxy):
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=aws_stack.receiver_env(aws_proxy.port))
    relay.start()
    try:
        created = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
        set_token(relay, created["id"])
        hex_key = aws_stack.secrets.get_secret_value(SecretId=aws_stack.secret_id)["SecretString"]
        assert accepted(relay, created["id"], created["secret"], "a.pdf") == "accepted"
        assert keys(relay, "reseal")["already_current"] == 1
        secret_now = aws_stack.secrets.get_secret_value(SecretId=aws_stack.secret_id)["SecretString"]
        assert secret_now == hex_key, "today's plain hex keeps working, unchanged until keys rotate"

        assert keys(relay, "rotate")["current"] == 2
        ring = json.loads(aws_stack.secrets.get_secret_value(SecretId=aws_stack.secret_id)["SecretString"])
        assert ring["current"] == 2 and ring["keys"]["1"] == hex_key
        assert accepted(relay, created["id"], created["secret"], "b.pdf") == "accepted"
        fresh = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
        assert accepted(relay, fresh["id"], fresh["secret"], "c.pdf") == "accepted", "re-read for v2"

        assert keys(relay, "reseal")["resealed"] == 1
        items = aws_stack.dynamodb.scan(TableName=aws_stack.integrations_table)["Items"]
        stored = json.dumps(items)
        assert "v2.2." in stored, "sealed under version 2"
        assert counts(status(relay)[1]) == (1, 0, 0)
        for key in ring["keys"].values():
            assert key not in stored and key not in relay.logs()
    finally:
        relay.stop()


def test_a_kms_held_version_derives_and_seals_in_kms_and_no_key_material_leaves_it(tmp_path, aws_stack, aws_proxy,
                                                                                      moto):
    import boto3
    from support import REGION
    kms = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{moto}", region_name=REGION)
    mac_key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    seal_key = kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    # moto's S3 stands in for R2's endpoint (aws_stack reset moto already: no s3 fixture).
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto}", region_name=REGION).create_bucket(Bucket="uploads")
    env = {**aws_stack.receiver_env(aws_proxy.port), "RELAY_R2_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}"}
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env)
    relay.start()
    try:
        before = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
        set_token(relay, before["id"])

        # A wrong key is refused before anything is written.
        wrong = run(relay, "keys", "rotate", "--kms-mac-key", seal_key, "--kms-seal-key", seal_key)
        assert wrong.returncode == 1 and "GenerateMac" in wrong.stderr
        rotated = keys(relay, "rotate", "--kms-mac-key", mac_key, "--kms-seal-key", seal_key)
        assert (rotated["current"], rotated["held"]) == (2, "kms")
        ring = json.loads(aws_stack.secrets.get_secret_value(SecretId=aws_stack.secret_id)["SecretString"])
        assert ring["keys"]["1"] not in json.dumps(rotated) + json.dumps(keys(relay, "status"))
        assert ring["keys"]["2"] == {"kms_mac_key": mac_key, "kms_seal_key": seal_key}, "ids only, no key"

        # A new integration's secret is KMS's MAC of the documented message.
        created = relay.create("r2", "uploads", "--account", R2_ACCOUNT)
        message = f"event-source-secret/v1/{created['id']}/1".encode()
        mac = kms.generate_mac(KeyId=mac_key, MacAlgorithm="HMAC_SHA_256", Message=message)["Mac"]
        assert created["secret"] == "whsec_" + base64.b64encode(mac).decode()
        aws_proxy.reset_counts()
        for n in range(3):
            assert accepted(relay, created["id"], created["secret"], f"k{n}.pdf") == "accepted"
        assert aws_proxy.count("kms", "GenerateMac") == 1, "derived once, then kept for the process's life"
        assert accepted(relay, before["id"], before["secret"], "old.pdf") == "accepted", "v1 still verifies"

        # Tokens: sealed by KMS Encrypt, opened by Decrypt, bound to their integration.
        set_token(relay, created["id"])
        assert keys(relay, "reseal")["resealed"] == 1
        for integration_id in (before["id"], created["id"]):
            assert relay.cli("integrations", "test", integration_id)["ok"]
        assert counts(status(relay)[1]) == (1, 0, 0) and status(relay)[2]["held"] == "kms"

        items = json.dumps(aws_stack.dynamodb.scan(TableName=aws_stack.integrations_table)["Items"])
        assert "v2.2." in items
        for text in (items, relay.logs(), json.dumps(ring)):
            assert R2_SECRET not in text and R2_KEY_ID not in text
            assert created["secret"] not in text and before["secret"] not in text
        assert ring["keys"]["1"] not in relay.logs()
    finally:
        relay.stop()

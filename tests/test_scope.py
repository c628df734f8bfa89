"""S3 integrations covering many buckets (a name pattern, several accounts, an organization),
against the real receiver: what the scope takes, what it rejects and why, and the commands that
only make sense for one bucket."""

import json
import subprocess

from support import RELAY_BIN, s3_object_created

ORG = ["--organization", "o-a1b2c3d4e5", "--account", "111122223333", "--account", "444455556666",
       "--exclude-bucket", "logs-tmp-*"]


def outcome(response):
    [result] = response.json()["results"]
    return response.status_code, result["outcome"], result["reason"]


def test_an_organization_scope_takes_matching_buckets_of_its_accounts_and_names_the_rest(receiver):
    created = receiver.create("s3", "logs-*", *ORG)
    iid, secret = created["id"], created["secret"]
    # The setup is the org-source module's block, with the scope's organization and patterns, and
    # no read access (that lists one bucket).
    assert 'source                  = "<path to bucket-relay>/terraform/modules/org-source"' in created["terraform"]
    assert 'organization_id         = "o-a1b2c3d4e5"' in created["terraform"]
    assert 'bucket_patterns         = ["logs-*"]' in created["terraform"]
    assert created["read_access_setup"] is None
    shown = receiver.cli("integrations", "show", iid)
    assert shown["scope"] == {"buckets": ["logs-*"], "exclude_buckets": ["logs-tmp-*"],
                              "accounts": ["111122223333", "444455556666"], "organization": "o-a1b2c3d4e5"}

    accepted = [("111122223333", "logs-eu-west-1"), ("111122223333", "logs-us-east-1"),
                ("444455556666", "logs-archive")]
    for account, bucket in accepted:
        event = s3_object_created("in/a.pdf", bucket=bucket, account=account, version_id=f"v-{bucket}")
        assert outcome(receiver.post_eventbridge(iid, secret, event)) == (200, "accepted", None)
    refused = [
        ("111122223333", "invoices", "bucket_mismatch"),  # outside the pattern
        ("111122223333", "logs-tmp-scratch", "bucket_mismatch"),  # excluded
        ("777788889999", "logs-eu-west-1", "account_mismatch"),  # not one of the organization's listed
    ]
    for account, bucket, reason in refused:
        event = s3_object_created("in/b.pdf", bucket=bucket, account=account)
        assert outcome(receiver.post_eventbridge(iid, secret, event)) == (422, "rejected", reason)

    # Each job names the account and bucket its event came from.
    jobs = {(job["account"], job["bucket"]) for job in receiver.jobs()}
    assert jobs == set(accepted)

    # The test event comes from a bucket the pattern matches, in the first account.
    test = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "--json", "integrations",
                           "test", iid, "--receiver-url", receiver.url], capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    assert json.loads(test.stdout)["ok"]


def test_one_bucket_commands_refuse_a_scope_by_name(receiver):
    created = receiver.create("s3", "logs-*", "--account", "111122223333", "--account", "444455556666")
    iid = created["id"]
    for args, says in [
        (("integrations", "set-mode", iid, "poll"), "poll mode lists one bucket"),
        (("integrations", "set-source", iid, "--role-arn", "arn:aws:iam::111122223333:role/r"), "many buckets"),
        (("backfill", iid), "many buckets"),
        (("integrations", "create", "--provider", "r2", "--bucket", "logs-*"), "for S3"),
        (("integrations", "create", "--provider", "s3", "--bucket", "x", "--organization", "org-1"), "o- and"),
    ]:
        result = receiver.cli(*args, check=False)
        assert result.returncode == 1, args
        assert says in result.stderr, (args, result.stderr)
    assert receiver.cli("integrations", "show", iid)["mode"] == "event"

"""S3 integrations covering many buckets (a name pattern, several accounts, an organization),
against the real receiver: what the scope takes, what it rejects and why, the commands that
only make sense for one bucket, and one job for an object that arrives both as an S3 event and
as a CloudTrail event (the receiver looks it up in moto's S3 through the read role)."""

import json
import subprocess

import boto3

from support import RELAY_BIN, cloudtrail_put_object, expected_job_id, s3_object_created

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
    # Its read access is a role of one name in each account, for object lookups.
    assert "set-source " + iid + " --role-name bucket-relay-read" in created["read_access_setup"]
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
        (("integrations", "set-source", iid, "--role-arn", "arn:aws:iam::111122223333:role/r"), "--role-name"),
        (("integrations", "set-source", iid, "--role-name", "a/b"), "not an IAM role name"),
        (("backfill", iid), "many buckets"),
        (("integrations", "create", "--provider", "r2", "--bucket", "logs-*"), "for S3"),
        (("integrations", "create", "--provider", "s3", "--bucket", "x", "--organization", "org-1"), "o- and"),
    ]:
        result = receiver.cli(*args, check=False)
        assert result.returncode == 1, args
        assert says in result.stderr, (args, result.stderr)
    assert receiver.cli("integrations", "show", iid)["mode"] == "event"


# moto's own account: a role assumed there reads the buckets the test makes.
MEMBER = "123456789012"
OTHER = "444455556666"


def test_an_object_arriving_as_an_s3_event_and_as_a_cloudtrail_event_is_one_job(relay, s3, moto, aws_proxy):
    s3.create_bucket(Bucket="logs-eu")  # unversioned: CloudTrail names no version of its objects
    relay.start()
    created = relay.create("s3", "logs-*", "--account", MEMBER, "--account", OTHER)
    iid, secret, external_id = created["id"], created["secret"], created["external_id"]
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{moto}")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MEMBER}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": external_id}}}]}
    iam.create_role(RoleName="bucket-relay-read", AssumeRolePolicyDocument=json.dumps(trust))
    set_source = relay.cli("integrations", "set-source", iid, "--role-name", "bucket-relay-read")
    assert set_source["read_access"] == "assume role bucket-relay-read in each account"
    assert relay.cli("integrations", "show", iid)["read_access"] == {
        "kind": "assume_role_in_each_account", "role_name": "bucket-relay-read"}

    def post(event):
        [result] = relay.post_eventbridge(iid, secret, event).json()["results"]
        return result["outcome"], result["reason"], result["job_id"]

    key = "in/report 1+2.pdf"
    put = s3.put_object(Bucket="logs-eu", Key=key, Body=b"%PDF-1.7 eleven")
    etag = put["ETag"].strip('"')
    one_job = expected_job_id(iid, "logs-eu", key, etag)
    # The CloudTrail event first (no ETag, no version id), then the S3 event: one job either way.
    trail = cloudtrail_put_object(key, bucket="logs-eu", version_id=None, size=None, event_id="ct-a",
                                  account=MEMBER)
    assert post(trail) == ("accepted", None, one_job)
    event = s3_object_created(key, bucket="logs-eu", version_id=None, etag=put["ETag"], account=MEMBER)
    assert post(event) == ("duplicate", "duplicate", one_job)
    # The other order, for another object.
    second = s3.put_object(Bucket="logs-eu", Key="in/b.pdf", Body=b"b")
    second_job = expected_job_id(iid, "logs-eu", "in/b.pdf", second["ETag"].strip('"'))
    event = s3_object_created("in/b.pdf", bucket="logs-eu", version_id=None, etag=second["ETag"], account=MEMBER)
    assert post(event) == ("accepted", None, second_job)
    trail = cloudtrail_put_object("in/b.pdf", bucket="logs-eu", version_id=None, size=None, event_id="ct-b",
                                  account=MEMBER)
    assert post(trail) == ("duplicate", "duplicate", second_job)
    jobs = {job["job_id"]: job for job in relay.jobs()}
    assert set(jobs) == {one_job, second_job}
    # The looked-up job carries the ETag and size HeadObject gave, and the event's own names.
    assert (jobs[one_job]["etag"], jobs[one_job]["size"], jobs[one_job]["source_event_id"]) == (etag, 15, "ct-a")

    # The role was assumed in the event's account, with our external id and the lookup session.
    [(_, assume)] = aws_proxy.calls("sts", "AssumeRole")
    assert f"RoleArn=arn%3Aaws%3Aiam%3A%3A{MEMBER}%3Arole%2Fbucket-relay-read" in assume
    assert f"ExternalId={external_id}" in assume and "RoleSessionName=bucket-relay-lookup" in assume
    # A part of a multipart upload is no object yet: skipped, and not looked up.
    part = cloudtrail_put_object("in/big.bin", bucket="logs-eu", version_id=None, event_id="ct-p", account=MEMBER)
    part["detail"]["eventName"] = "UploadPart"
    assert post(part) == ("skipped", "not_object_created", None)
    heads = aws_proxy.calls("s3", "HeadObject")
    assert len(heads) == 2 and all(key_id != "test" for key_id, _ in heads), "HeadObject under the role"

    # An object deleted before its CloudTrail event is looked at: nothing is left to ingest.
    s3.put_object(Bucket="logs-eu", Key="in/gone.pdf", Body=b"g")
    s3.delete_object(Bucket="logs-eu", Key="in/gone.pdf")
    gone = cloudtrail_put_object("in/gone.pdf", bucket="logs-eu", version_id=None, event_id="ct-g", account=MEMBER)
    assert post(gone) == ("skipped", "object_gone", None)

    # A lookup refused (no s3:GetObject, or a role missing in an account) falls back to the
    # event's own id, and says so in a warning naming the cause.
    aws_proxy.deny("HeadObject")
    s3.put_object(Bucket="logs-eu", Key="in/c.pdf", Body=b"c")
    denied = cloudtrail_put_object("in/c.pdf", bucket="logs-eu", version_id=None, event_id="ct-c", account=MEMBER)
    assert post(denied) == ("accepted", None, expected_job_id(iid, "logs-eu", "in/c.pdf", "ct-c"))
    aws_proxy.deny("AssumeRole")
    other = cloudtrail_put_object("in/d.pdf", bucket="logs-eu", version_id=None, event_id="ct-d", account=OTHER)
    assert post(other)[0] == "accepted"
    failures = [line for line in relay.log_lines() if line.get("message") == "object_lookup_failed"]
    assert [(f["cause"], f["id"], f["key"]) for f in failures] == [
        ("head_object_denied", "ct-c", "in/c.pdf"), ("assume_role_denied", "ct-d", "in/d.pdf")]
    assert failures[1]["role_arn"] == f"arn:aws:iam::{OTHER}:role/bucket-relay-read"
    assert external_id not in relay.logs() and secret not in relay.logs()

    # `integrations test` assumes the role in each account of the scope, and with a bucket it
    # looks a probe key up there: a role that may not read the bucket is named.
    aws_proxy.heal()
    checked = relay.cli("integrations", "test", iid)
    assert checked["ok"] and [a["account"] for a in checked["accounts"]] == [MEMBER, OTHER]
    assert relay.cli("integrations", "test", iid, "--account", MEMBER, "--bucket", "logs-eu")["ok"]
    aws_proxy.deny("HeadObject")
    refused = relay.cli("integrations", "test", iid, "--account", MEMBER, "--bucket", "logs-eu", check=False)
    [account] = json.loads(refused.stdout)["accounts"]
    assert refused.returncode == 1 and (account["ok"], account["error"]) == (False, "head_object_denied")

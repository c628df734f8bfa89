"""What the end-to-end tests drive and send: the real `bucket-relay` binary over real HTTP
(`Receiver`), the AWS stack in moto (`AwsStack`), and the events R2, S3 and CloudTrail write.

Requests are signed with the `standardwebhooks` reference library, an implementation independent
of ours. The pytest fixtures built on these live in conftest.py.
"""

import base64
import datetime as dt
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import jsonschema
import requests
from standardwebhooks.webhooks import Webhook

from relay_contract import BIN_DIR, ROOT, contract

RELAY_BIN = BIN_DIR / "bucket-relay"
SIGN_BIN = BIN_DIR / "examples" / "sign"


# The checked-in JSON Schema of each job schema (docs/schemas): every job a test reads off a queue
# is held to its own.
JOB_SCHEMAS = {
    f"ingest-job/{version}": jsonschema.Draft202012Validator(
        json.loads((ROOT / "docs" / "schemas" / f"ingest-job-{version}.schema.json").read_text()),
        format_checker=jsonschema.FormatChecker())
    for version in ("v1", "v2")
}


def valid_job(job):
    """`job`, after checking it against the JSON Schema its `schema` names."""
    validator = JOB_SCHEMAS.get(job.get("schema"))
    assert validator is not None, f"a job of no known schema: {job.get('schema')!r}"
    errors = sorted(validator.iter_errors(job), key=lambda e: list(e.path))
    assert not errors, f"{job.get('schema')} job breaks its JSON Schema: {[e.message for e in errors]}"
    return job


# How long a running receiver may go on with an integration it read before a CLI change
# (receiver/src/integrations.rs, STALENESS): tests wait this long after one.
CONFIG_STALENESS_SECONDS = contract()["receiver"]["integration_staleness_seconds"]


def wait_for_config_change():
    """Waits out the staleness bound, so that a CLI change has reached the running receiver."""
    time.sleep(CONFIG_STALENESS_SECONDS + 0.2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A running `bucket-relay serve` and the CLI pointed at the same data directory."""

    def __init__(self, data_dir: Path, log_path: Path, env=None, serve_args=()):
        self.data_dir = data_dir
        self.log_path = log_path
        self.serve_args = list(serve_args)
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    # --- process -------------------------------------------------------------------------
    def start(self):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(RELAY_BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
             *self.serve_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"receiver did not start; log:\n{self.logs()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        if self.process:
            self.log.close()
            self.process = None

    def restart(self):
        """A new process on the same data: a cold start."""
        self.stop()
        self.start()

    def logs(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self):
        return [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]

    # --- CLI -----------------------------------------------------------------------------
    def cli(self, *args, check=True):
        result = subprocess.run(
            [str(RELAY_BIN), "--data-dir", str(self.data_dir), "--json", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"bucket-relay {' '.join(args)} failed: {result.stderr}")
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else result

    def create(self, provider="r2", bucket="uploads", *extra):
        return self.cli("integrations", "create", "--provider", provider, "--bucket", bucket,
                        "--receiver-url", self.url, *extra)

    def jobs(self):
        return [valid_job(job) for job in self.cli("jobs", "list")]

    # --- requests ------------------------------------------------------------------------
    def events_url(self, integration_id):
        return f"{self.url}/v1/integrations/{integration_id}/events"

    def post_batch(self, integration_id, secret, events, timestamp=None, msg_id=None, body=None):
        """POST a worker batch, signed by the standardwebhooks reference library."""
        body = body if body is not None else json.dumps({"events": events})
        headers = signed_headers(secret, body, timestamp, msg_id)
        return requests.post(self.events_url(integration_id), data=body.encode(), headers=headers, timeout=30)

    def post_eventbridge(self, integration_id, secret, event):
        body = event if isinstance(event, (bytes, str)) else json.dumps(event)
        headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}
        return requests.post(self.events_url(integration_id), data=body, headers=headers, timeout=30)


def signed_headers(secret, body, timestamp=None, msg_id=None):
    """Standard Webhooks headers for `body`, signed by the reference library, as the worker sends."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or dt.datetime.now(tz=dt.timezone.utc)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body),
    }


# A Cloudflare account id (32 hexadecimal digits), as R2 integrations and notifications carry it.
R2_ACCOUNT = "4f3c1e0d9b8a7c6d5e4f3a2b1c0d9e8f"


# --- event builders -------------------------------------------------------------------------

def r2_notification(key, bucket="uploads", size=1024, action="PutObject", etag=None, account=R2_ACCOUNT):
    notification = {
        "account": account,
        "action": action,
        "bucket": bucket,
        "object": {"key": key},
        "eventTime": "2026-11-22T10:00:00.000Z",
    }
    if action != "DeleteObject" and action != "LifecycleDeletion":
        notification["object"]["size"] = size
        notification["object"]["eTag"] = etag or uuid.uuid5(uuid.NAMESPACE_URL, key).hex
    return notification


def r2_event(key, message_id=None, **kwargs):
    return {"id": message_id or uuid.uuid4().hex, "notification": r2_notification(key, **kwargs)}


def s3_object_created(key, bucket="docs", size=1024, version_id="v1", etag='"abc"', account="123456789012",
                      detail_type="Object Created", event_id=None, raw_key=None):
    """An S3 EventBridge event for the object `key`, written as S3 writes it: form-URL-encoded
    (`quote_plus`, slashes kept). `raw_key` puts a key in the event as is."""
    from urllib.parse import quote_plus
    key = raw_key if raw_key is not None else quote_plus(key, safe="/")
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account,
        "time": "2026-11-22T10:00:00Z",
        "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "version-id": version_id,
                       "sequencer": "0062E99A88DC407460"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": account,
            "reason": "PutObject",
        },
    }


def cloudtrail_put_object(key, bucket="docs", version_id="ver9", size=4096, event_id="ct-evt-1",
                          account="123456789012"):
    """A CloudTrail PutObject data event for the object `key`, its key percent-encoded (`quote`,
    slashes kept; a plus stays a plus)."""
    from urllib.parse import quote
    return {
        "version": "0", "id": event_id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": account, "time": "2026-11-22T10:00:01Z", "region": "eu-west-1",
        "detail": {"eventName": "PutObject", "eventTime": "2026-11-22T10:00:00Z", "awsRegion": "eu-west-1",
                   "recipientAccountId": account,
                   "requestParameters": {"bucketName": bucket, "key": quote(key, safe="/")},
                   "responseElements": {"x-amz-version-id": version_id},
                   "additionalEventData": {"bytesTransferredIn": size}},
    }


def expected_job_id(integration_id, bucket, key, version):
    """The contract's formula, computed independently of the Rust code: SHA-256 over each field
    as its 4-byte big-endian UTF-8 length and its bytes; the first 16 bytes, in hex."""
    import hashlib
    data = b"".join(len(field.encode()).to_bytes(4, "big") + field.encode()
                    for field in (integration_id, bucket, key, version))
    return hashlib.sha256(data).digest()[:16].hex()


def decode_secret(secret):
    return base64.b64decode(secret.removeprefix("whsec_"))


# --- AWS: moto behind a counting proxy -------------------------------------------------------

REGION = "us-east-1"
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION}


class AwsStack:
    """Tables, queues and the master-key secret, as the Terraform stack makes them."""

    def __init__(self, moto_port, fifo=False):
        import boto3
        os.environ.update(AWS_TEST_ENV)
        endpoint = f"http://127.0.0.1:{moto_port}"
        self.dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        self.secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
        suffix = ".fifo" if fifo else ""
        self.integrations_table = "relay-integrations"
        self.ledger_table = "relay-ledger"
        for table, key in ((self.integrations_table, "id"), (self.ledger_table, "job_id")):
            self.dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                       KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                                       AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}])
        dlq_attributes = {"FifoQueue": "true"} if fifo else {}
        self.dlq_url = self.sqs.create_queue(QueueName=f"relay-ingest-dlq{suffix}", Attributes=dlq_attributes)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})}
        if fifo:
            attributes["FifoQueue"] = "true"
        self.queue_url = self.sqs.create_queue(QueueName=f"relay-ingest{suffix}", Attributes=attributes)["QueueUrl"]
        self.secret_id = "relay/master-key"
        self.secrets.create_secret(Name=self.secret_id, SecretString=os.urandom(32).hex())

    def receiver_env(self, endpoint_port):
        return {
            **AWS_TEST_ENV,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{endpoint_port}",
            "RELAY_BACKEND": "aws",
            "RELAY_INTEGRATIONS_TABLE": self.integrations_table,
            "RELAY_LEDGER_TABLE": self.ledger_table,
            "RELAY_QUEUE_URL": self.queue_url,
            "RELAY_MASTER_KEY_SECRET_ID": self.secret_id,
            # The tests read usage from another process right after a request: each request's
            # counts are written at once here. The default (10 s in memory) has its own tests.
            "RELAY_USAGE_FLUSH": "0s",
        }

    def depth(self, queue_url=None):
        """Messages on the queue, visible or not (moto counts exactly)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def messages(self, queue_url=None, wait=0):
        """Every message now visible on the queue (received, then left to reappear)."""
        queue_url = queue_url or self.queue_url
        found, seen = [], set()
        for _ in range(20):
            batch = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                             VisibilityTimeout=30, AttributeNames=["All"],
                                             MessageAttributeNames=["All"]).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break
            for m in fresh:
                seen.add(m["MessageId"])
                found.append(m)
        for m in found:
            # The ingest queue carries jobs (dead-letter queues may hold what a test put there).
            if queue_url == self.queue_url:
                valid_job(json.loads(m["Body"]))
        return found

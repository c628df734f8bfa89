"""What the receiver costs on AWS, from measured calls: `scripts/aws-calls` prints it.

Runs moto behind the counting proxy (aws_proxy.py), whose meter bills every DynamoDB call by the
items' sizes as AWS documents (dynamodb_meter.py: moto's own `ConsumedCapacity` is not billing),
and the real `bucket-relay serve --backend aws`. It measures both ways events arrive:
- R2's worker: one signed batch of 100 new objects, then the same batch again (duplicates);
- S3's EventBridge API destination: one event per request, 20 new objects, then again;
and what a cold start reads (Secrets Manager). Then it prices a million objects at list prices
(`PRICES`) beside a per-file Lambda design and Snowpipe. `--markdown` prints the README's table,
which tests/test_costs.py holds to these numbers.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import requests  # noqa: E402

from aws_proxy import CountingProxy  # noqa: E402
from dynamodb_meter import DynamoMeter  # noqa: E402
from support import AwsStack, Receiver, free_port, r2_event, s3_object_created  # noqa: E402

BATCH = 100
ONE_BY_ONE = 20

# List prices, US East (N. Virginia), as AWS and Snowflake publish them (checked 2026-11-30):
# DynamoDB on demand since its November 2024 cut, SQS standard queues past the free tier,
# Lambda on x86, EventBridge API destinations; Snowpipe's per-file charge in its older model
# (0.06 credits per 1,000 files) at $2 a credit (Standard edition).
PRICES_DATE = "2026-11-30"
PRICES = {
    "dynamodb_write_unit": 0.625e-6,
    "dynamodb_read_unit": 0.125e-6,
    "sqs_request": 0.40e-6,
    "lambda_request": 0.20e-6,
    "lambda_gb_second": 0.0000166667,
    "api_destination_call": 0.20e-6,
    "secretsmanager_call": 0.05 / 10_000,
}
SNOWPIPE_CREDITS_PER_FILE = 0.06 / 1000
SNOWFLAKE_CREDIT = 2.00
# A per-file Lambda design: one 1024 MB invocation per uploaded file, each doing what one of our
# one-event requests does (a conditional write and a send) in an assumed 100 ms.
PER_FILE_LAMBDA_MB = 1024
PER_FILE_LAMBDA_MS = 100


def start_moto():
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process, port
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


class Measured:
    """One workload's calls and billed units, per event."""

    def __init__(self, label, events, proxy, meter, requests_made):
        self.label = label
        self.events = events
        with proxy.lock:
            self.calls = dict(proxy.counts)
        self.write_units = meter.total("write")
        self.read_units = meter.total("read")
        self.units = dict(meter.units)
        self.requests = requests_made

    def per(self, value):
        return value / self.events

    def count(self, service, operation=None):
        return sum(n for (s, o), n in self.calls.items() if s == service and operation in (None, o))

    def row(self):
        return {
            "workload": self.label,
            "dynamodb_calls": self.per(self.count("dynamodb")),
            "write_units": self.per(self.write_units),
            "read_units": self.per(self.read_units),
            "sqs_requests": self.per(self.count("sqs", "SendMessageBatch") + self.count("sqs", "SendMessage")),
            "requests": self.per(self.requests),
        }


def measure(proxy, meter, label, events, send):
    proxy.reset_counts()
    meter.reset()
    requests_made = send()
    return Measured(label, events, proxy, meter, requests_made)


def run():
    moto, moto_port = start_moto()
    proxy = CountingProxy(moto_port).start()
    meter = DynamoMeter()
    proxy.meter = meter
    work = Path(tempfile.mkdtemp())
    try:
        stack = AwsStack(moto_port)
        # Usage counts wait in memory (RELAY_USAGE_FLUSH, 10 s by default) and are written once
        # per process and interval, whatever the traffic: held for the whole run here, so that no
        # workload's figures depend on when the interval ends (USAGE_NOTE says what they add).
        env = {**stack.receiver_env(proxy.port), "RELAY_USAGE_FLUSH": "60s"}
        receiver = Receiver(work / "relay", work / "serve.log", env=env)
        receiver.start()
        r2 = receiver.create("r2", "uploads")
        s3 = receiver.create("s3", "docs")
        # Warm up: the master key is read once per cold start, and each integration once.
        receiver.post_batch(r2["id"], r2["secret"], [r2_event("warm-up.pdf")])
        receiver.post_eventbridge(s3["id"], s3["secret"], s3_object_created("warm-up.pdf"))
        batch = [r2_event(f"in/{i:03}.pdf") for i in range(BATCH)]

        def send_batch(outcome):
            def send():
                answer = receiver.post_batch(r2["id"], r2["secret"], batch).json()["results"]
                assert all(r["outcome"] == outcome for r in answer), answer
                return 1
            return send

        singles = [s3_object_created(f"in/{i:03}.pdf", version_id=f"v{i}") for i in range(ONE_BY_ONE)]

        def send_singles(outcome):
            def send():
                for event in singles:
                    answer = receiver.post_eventbridge(s3["id"], s3["secret"], event).json()["results"]
                    assert answer[0]["outcome"] == outcome, answer
                return len(singles)
            return send

        # A redelivery claims each job (a failed conditional write); once a commit was mostly
        # duplicates, the next reads the ledger first (half a read unit a job) and writes nothing.
        rows = [
            measure(proxy, meter, "worker batch, new", BATCH, send_batch("accepted")),
            measure(proxy, meter, "worker batch, redelivered", BATCH, send_batch("duplicate")),
            measure(proxy, meter, "worker batch, redelivered again", BATCH, send_batch("duplicate")),
            measure(proxy, meter, "one event, new", ONE_BY_ONE, send_singles("accepted")),
            measure(proxy, meter, "one event, redelivered", ONE_BY_ONE, send_singles("duplicate")),
        ]
        proxy.reset_counts()
        receiver.restart()
        receiver.post_batch(r2["id"], r2["secret"], [r2_event("after-restart.pdf")])
        cold = {"secretsmanager": proxy.count("secretsmanager"), "kms": proxy.count("kms")}
        receiver.stop()
        return rows, cold
    finally:
        proxy.stop()
        moto.terminate()


USAGE_NOTE = ("usage counts: one UpdateItem (a write unit) per integration and process every 10 s, "
              "not in the per-object figures")


def dollars_per_million(row, path):
    """A million objects through `path` ("batch": 100 per request; "single": one per request)."""
    p = PRICES
    cost = (row["write_units"] * p["dynamodb_write_unit"] + row["read_units"] * p["dynamodb_read_unit"]
            + row["sqs_requests"] * p["sqs_request"] + row["requests"] * p["lambda_request"])
    if path == "single":
        cost += p["api_destination_call"]
    return cost * 1_000_000


def comparisons():
    per_file = (PRICES["lambda_request"] + PER_FILE_LAMBDA_MB / 1024 * PER_FILE_LAMBDA_MS / 1000
                * PRICES["lambda_gb_second"] + PRICES["dynamodb_write_unit"] + PRICES["sqs_request"])
    snowpipe = SNOWPIPE_CREDITS_PER_FILE * SNOWFLAKE_CREDIT
    return {"per-file Lambda (1024 MB, 100 ms)": per_file * 1_000_000, "Snowpipe (0.06 credits / 1,000 files)": snowpipe * 1_000_000}


TABLE_HEAD = "| per object | DynamoDB calls | write units | read units | SQS requests | requests | $ per million |"


def table(rows):
    lines = [TABLE_HEAD, "|---|---|---|---|---|---|---|"]
    for measured in rows:
        row = measured.row()
        path = "single" if measured.label.startswith("one event") else "batch"
        lines.append(f"| {row['workload']} | {row['dynamodb_calls']:.2f} | {row['write_units']:.2f} | "
                     f"{row['read_units']:.2f} | {row['sqs_requests']:.2f} | {row['requests']:.2f} | "
                     f"${dollars_per_million(row, path):.2f} |")
    for name, cost in comparisons().items():
        lines.append(f"| {name} | | | | | | ${cost:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    rows, cold = run()
    if "--markdown" in sys.argv:
        print(table(rows), end="")
        return
    if "--json" in sys.argv:
        print(json.dumps({"rows": [r.row() | {"units": {f"{o} {k}": n for (o, k), n in r.units.items()}}
                                   for r in rows], "cold_start": cold}, indent=2))
        return
    for measured in rows:
        print(f"\n{measured.label} ({measured.events} events):")
        for (service, operation), count in sorted(measured.calls.items()):
            print(f"  {service:<15} {operation:<22} {count:>5}   ({count / measured.events:.2f} per event)")
        for (operation, kind), units in sorted(measured.units.items()):
            print(f"  {'units':<15} {operation + ' ' + kind:<22} {units:>7.1f} ({units / measured.events:.2f} per event)")
    print(f"\nNot per object: {USAGE_NOTE}.")
    print(f"\nPer cold start: {cold['secretsmanager']} Secrets Manager call(s), {cold['kms']} KMS call(s) "
          "(KMS only with a KMS-held key version)")
    print(f"\nPrices: us-east-1 list prices as of {PRICES_DATE}; Lambda duration is not in these figures\n"
          "(scripts/lambda-start measures its CPU floor).\n")
    print(table(rows), end="")


if __name__ == "__main__":
    main()

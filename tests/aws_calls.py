"""Counts the receiver's AWS API calls per event: the cost figures docs/performance.md states.

Runs moto, the counting proxy and the real `bucket-relay serve --backend aws`, then sends one
signed 100-event batch of new objects and the same batch again (all duplicates), and prints the
calls per service and operation. Run it with `scripts/aws-calls`.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from aws_proxy import CountingProxy  # noqa: E402
from support import AwsStack, Receiver, free_port, r2_event  # noqa: E402

import subprocess  # noqa: E402
import time  # noqa: E402

import requests  # noqa: E402

EVENTS = 100


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


def report(label, proxy):
    print(f"\n{label}:")
    with proxy.lock:
        rows = sorted(proxy.counts.items())
    for (service, operation), count in rows:
        print(f"  {service:<15} {operation:<22} {count:>5}   ({count / EVENTS:.2f} per event)")


def main():
    moto, moto_port = start_moto()
    proxy = CountingProxy(moto_port).start()
    try:
        stack = AwsStack(moto_port)
        work = Path(tempfile.mkdtemp())
        receiver = Receiver(work / "relay", work / "serve.log", env=stack.receiver_env(proxy.port))
        receiver.start()
        created = receiver.create("r2", "uploads")
        # Warm up: the master key is read once per cold start, not per request.
        receiver.post_batch(created["id"], created["secret"], [r2_event("warm-up.pdf")])
        events = [r2_event(f"in/{i:03}.pdf") for i in range(EVENTS)]

        proxy.reset_counts()
        answer = receiver.post_batch(created["id"], created["secret"], events).json()["results"]
        assert all(r["outcome"] == "accepted" for r in answer), answer
        report(f"{EVENTS} new objects in one signed batch (all accepted)", proxy)
        sqs, dynamodb = proxy.count("sqs"), proxy.count("dynamodb")

        proxy.reset_counts()
        answer = receiver.post_batch(created["id"], created["secret"], events).json()["results"]
        assert all(r["outcome"] == "duplicate" for r in answer), answer
        report(f"the same {EVENTS} again (all duplicates)", proxy)

        print(f"\nSQS calls per {EVENTS} accepted events: {sqs}   (target: 10)")
        print(f"DynamoDB calls per accepted event: {dynamodb / EVENTS:.2f}")
        receiver.stop()
    finally:
        proxy.stop()
        moto.terminate()


if __name__ == "__main__":
    main()

"""Fixtures for the end-to-end tests (the helpers they build on are in support.py).

Each test gets its own receiver: a fresh data directory, a free loopback port, and the `serve`
process started and stopped around it. The AWS tests share one moto server, reset per test.
"""

import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

from support import AWS_TEST_ENV, REGION, RELAY_BIN, AwsStack, Receiver, free_port

@pytest.fixture
def receiver(tmp_path):
    if not RELAY_BIN.exists():
        pytest.fail(f"{RELAY_BIN} is missing: run scripts/test, which builds it first")
    r = Receiver(tmp_path / "relay", tmp_path / "serve.log")
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """One moto server for the session; each test resets it."""
    import sys
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        raise RuntimeError("moto_server did not start")
    yield port
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # busy closing a big bucket's files
        process.kill()
        process.wait(timeout=10)
    log.close()


@pytest.fixture
def aws_stack(moto):
    requests.post(f"http://127.0.0.1:{moto}/moto-api/reset", timeout=10)
    return AwsStack(moto)


@pytest.fixture
def fifo_stack(moto):
    """The stack with FIFO ingest queues (group and deduplication ids)."""
    requests.post(f"http://127.0.0.1:{moto}/moto-api/reset", timeout=10)
    return AwsStack(moto, fifo=True)


def serving(tmp_path, stack, proxy):
    """A receiver on `stack`'s AWS backends, reached through `proxy`, until the test ends."""
    r = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=stack.receiver_env(proxy.port))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def fifo_receiver(tmp_path, fifo_stack, aws_proxy):
    yield from serving(tmp_path, fifo_stack, aws_proxy)


@pytest.fixture
def aws_proxy(moto):
    from aws_proxy import CountingProxy
    proxy = CountingProxy(moto).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def aws_receiver(tmp_path, aws_stack, aws_proxy):
    yield from serving(tmp_path, aws_stack, aws_proxy)


@pytest.fixture
def s3(moto):
    """moto's S3 (and IAM, STS), reset, for the tests that read customers' buckets."""
    requests.post(f"http://127.0.0.1:{moto}/moto-api/reset", timeout=10)
    os.environ.update(AWS_TEST_ENV)
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto}", region_name=REGION)


@pytest.fixture
def relay(tmp_path, aws_proxy):
    """A receiver on an embedded data dir (not started), with S3, STS and R2's endpoint all
    behind the proxy."""
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}",
           "RELAY_R2_ENDPOINT_URL": f"http://127.0.0.1:{aws_proxy.port}"}
    r = Receiver(tmp_path / "relay", tmp_path / "serve.log", env=env)
    yield r
    r.stop()

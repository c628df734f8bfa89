"""How fast the receiver starts and answers on Lambda, and how big its package is:
`scripts/lambda-start` runs this.

A minimal Lambda runtime API (the HTTP interface Lambda gives a custom runtime: `next`, then a
`response` per invocation) hands the real binary, built as the Lambda package is, function URL
events, and times:
- a cold start: from spawning the process to its first answer, median of 20, for a request
  that needs no master key (`/healthz`) and for a signed batch, which fetches it from Secrets
  Manager (moto);
- a warm invocation: from handing over the event to the answer, for a worker's 100-event batch
  and for S3's one event (Lambda bills each started millisecond);
and the same cold start for the smallest `lambda_http` function built the same way (the
`lambda_hello` example): the floor no function can go under on this machine. Then the zip each
would deploy as.
"""

import http.server
import io
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from aws_calls import start_moto  # noqa: E402
from support import AwsStack, Receiver, r2_event, s3_object_created, signed_headers  # noqa: E402

COLD_STARTS = 20
WARM = 20
MEMORY_MB = 256  # the receiver module's default memory_size


class RuntimeApi:
    """Lambda's runtime API, for one function process at a time."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = {}
        self.answered = threading.Condition()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.endswith("/extension/event/next"):
                    # The receiver's extension only registers (so that Lambda sends SIGTERM
                    # before a shutdown) and subscribes to nothing: its next event never comes.
                    api.stopped.wait()
                    return self.reply(500, b"{}")
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404, b"{}")
                request_id, event = api.events.get()
                api.handed[request_id] = time.perf_counter()
                self.reply(200, json.dumps(event).encode(), {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:bucket-relay",
                })

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("/")
                if self.path.endswith("/extension/register"):
                    return self.reply(200, json.dumps({"functionName": "bucket-relay", "functionVersion": "$LATEST",
                                                       "handler": "bootstrap"}).encode(),
                                      {"Lambda-Extension-Identifier": str(uuid.uuid4())})
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    request_id = parts[-2]
                    with api.answered:
                        api.answers[request_id] = (time.perf_counter(), parts[-1], body)
                        api.answered.notify_all()
                else:  # init/error: the process could not start
                    with api.answered:
                        api.answers["init"] = (time.perf_counter(), "init-error", body)
                        api.answered.notify_all()
                self.reply(202, b"{}")

            def reply(self, status, body, headers=None):
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the function was stopped: a cold start measured, its process killed

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a function process killed after its cold start drops its connection

        self.handed = {}
        self.stopped = threading.Event()
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, event, timeout=60):
        """Queues `event`; answers (the answer's kind, its body, handed → answered seconds)."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        deadline = time.monotonic() + timeout
        with self.answered:
            while request_id not in self.answers and "init" not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the function did not answer")
                self.answered.wait(left)
            if "init" in self.answers:
                raise RuntimeError(f"the function could not start: {self.answers['init'][2][:500]!r}")
            at, kind, body = self.answers.pop(request_id)
        return kind, json.loads(body or b"{}"), at - self.handed.pop(request_id)

    def stop(self):
        self.stopped.set()
        self.server.shutdown()


def function_url_event(method, path, headers=None, body=""):
    """A function URL request as Lambda hands it to the function (payload format 2.0)."""
    now = int(time.time() * 1000)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws", **(headers or {})},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "requestId": str(uuid.uuid4()), "routeKey": "$default",
            "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": now,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "lambda-start"},
        },
        "body": body, "isBase64Encoded": False,
    }


def signed_batch(integration, keys):
    body = json.dumps({"events": [r2_event(key) for key in keys]})
    headers = {k.lower(): v for k, v in signed_headers(integration["secret"], body).items()}
    return function_url_event("POST", f"/v1/integrations/{integration['id']}/events", headers, body)


def bearer_event(integration, event):
    body = json.dumps(event)
    headers = {"content-type": "application/json", "authorization": f"Bearer {integration['secret']}"}
    return function_url_event("POST", f"/v1/integrations/{integration['id']}/events", headers, body)


def lambda_env(api, extra):
    return {**os.environ, **extra, "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "bucket-relay", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bucket-relay"}


def cold_start(binary, env, event, check):
    """Milliseconds from spawning `binary` to its answer to `event`, which `check` vets."""
    api = RuntimeApi()
    api.events.put(("first", event))
    started = time.perf_counter()
    process = subprocess.Popen([str(binary)], env=lambda_env(api, env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with api.answered:
            while "first" not in api.answers and "init" not in api.answers:
                if not api.answered.wait(30):
                    raise TimeoutError(f"{binary.name} never answered: {process.stderr.read1(4096)!r}")
        at, kind, body = api.answers.get("first") or api.answers["init"]
        check(kind, json.loads(body or b"{}"))
        return (at - started) * 1000
    finally:
        process.kill()
        process.wait()
        api.stop()


def cpu_seconds(pid):
    """The process's user and system CPU time so far (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def zipped(binary):
    """The deployment zip's size: the binary as `bootstrap`, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, binary.read_bytes())
    return len(buffer.getvalue())


def answered(status):
    def check(kind, body):
        assert kind == "response" and body.get("statusCode") == status, (kind, body)
    return check


def main():
    bin_dir = Path(os.environ["RELAY_LAMBDA_BIN_DIR"])
    receiver_bin, hello_bin = bin_dir / "bucket-relay", bin_dir / "examples" / "lambda_hello"
    moto, moto_port = start_moto()
    work = Path(tempfile.mkdtemp())
    try:
        stack = AwsStack(moto_port)
        # As deployed: usage counts wait in memory (the tests' write-through setting is theirs).
        env = {k: v for k, v in stack.receiver_env(moto_port).items() if k != "RELAY_USAGE_FLUSH"}
        cli = Receiver(work / "relay", work / "cli.log", env=env)
        r2 = cli.create("r2", "uploads")
        s3 = cli.create("s3", "docs")
        healthz = function_url_event("GET", "/healthz")
        hello = [cold_start(hello_bin, {}, healthz, answered(200)) for _ in range(COLD_STARTS)]
        health = [cold_start(receiver_bin, env, healthz, answered(200)) for _ in range(COLD_STARTS)]
        keyed = [cold_start(receiver_bin, env, signed_batch(r2, [f"cold/{i}.pdf"]), answered(200))
                 for i in range(COLD_STARTS)]

        api = RuntimeApi()
        process = subprocess.Popen([str(receiver_bin)], env=lambda_env(api, env),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            api.invoke(signed_batch(r2, ["warm-up.pdf"]))
            batches, singles = [], []
            cpu_before = cpu_seconds(process.pid)
            for round in range(WARM):
                kind, body, seconds = api.invoke(signed_batch(r2, [f"warm/{round}/{i}.pdf" for i in range(100)]))
                assert kind == "response" and body["statusCode"] == 200, body
                batches.append(seconds * 1000)
            cpu_batch = (cpu_seconds(process.pid) - cpu_before) / WARM * 1000
            cpu_before = cpu_seconds(process.pid)
            for round in range(WARM):
                kind, body, seconds = api.invoke(bearer_event(s3, s3_object_created(f"warm/{round}.pdf",
                                                                                    version_id=f"v{round}")))
                assert kind == "response" and body["statusCode"] == 200, body
                singles.append(seconds * 1000)
            cpu_single = (cpu_seconds(process.pid) - cpu_before) / WARM * 1000
        finally:
            process.kill()
            process.wait()
            api.stop()
    finally:
        moto.terminate()

    median = statistics.median
    mb = 1024 * 1024
    print(f"Lambda package ({receiver_bin.parent.name} profile), cold starts: median of {COLD_STARTS}; "
          f"warm: median of {WARM}; backends on moto (each call a few ms that AWS would spend too)\n")
    print(f"| | binary | zip | cold start to first answer |")
    print(f"|---|---|---|---|")
    print(f"| lambda_http hello (the floor) | {hello_bin.stat().st_size / mb:.1f} MB | {zipped(hello_bin) / mb:.2f} MB "
          f"| {median(hello):.1f} ms |")
    print(f"| receiver, `/healthz` | {receiver_bin.stat().st_size / mb:.1f} MB | {zipped(receiver_bin) / mb:.2f} MB "
          f"| {median(health):.1f} ms |")
    print(f"| receiver, first batch (reads the master key) | | | {median(keyed):.1f} ms |")
    print(f"\nwarm, handed → answered (what Lambda bills, here mostly moto's time): 100-event batch "
          f"{median(batches):.1f} ms (p90 {statistics.quantiles(batches, n=10)[-1]:.1f}), one S3 event "
          f"{median(singles):.1f} ms (p90 {statistics.quantiles(singles, n=10)[-1]:.1f})")
    print(f"the function's own CPU time: {cpu_batch:.1f} ms a 100-event batch, {cpu_single:.1f} ms an event "
          "(the floor of its billed time with backends that answer at once)")
    gb_s = lambda ms: -(-ms // 1) / 1000 * MEMORY_MB / 1024  # noqa: E731 (billed per started ms)
    price = 0.0000166667
    print(f"Lambda duration at {MEMORY_MB} MB, x86 ($0.0000166667 per GB-s), at the CPU floor: "
          f"${gb_s(cpu_batch) * price / 100 * 1e6:.3f} per million objects in batches of 100, "
          f"${gb_s(cpu_single) * price * 1e6:.3f} per million one by one; at moto's pace "
          f"${gb_s(median(batches)) * price / 100 * 1e6:.2f} and ${gb_s(median(singles)) * price * 1e6:.2f}")


if __name__ == "__main__":
    main()

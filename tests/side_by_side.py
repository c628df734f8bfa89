"""`bucket-relay serve` beside the Node peer receiver, over HTTP, in one run (`scripts/bench`).

Both servers get the same pre-signed requests, each a batch of unique objects for one R2
integration (an account id Cloudflare would issue: 32 hex digits), pinned to core 0 with `wrk`
on core 1; afterwards the new jobs on each side's queue are counted from its SQLite file. The
peer is `node-receiver.mjs` from the team's bench folder (BENCH_PEER_DIR), run by the Node 22
that the worker's tests install.

    python tests/side_by_side.py --bin target/release/bucket-relay --peer DIR [--per 100]
"""

import argparse
import datetime
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "0123456789abcdef0123456789abcdef"
BUCKET = "uploads"

# Requests per Lua function in the requests file.
CHUNK = 10000

# wrk's request script: replays the signed requests in turn, each once.
REPLAY_LUA = """
local n = 0
function init(args) dofile(args[1]) end
function request()
  n = n + 1
  local r = reqs[((n - 1) % #reqs) + 1]
  return wrk.format("POST", path, {["content-type"] = "application/json",
    ["webhook-id"] = r[1], ["webhook-timestamp"] = r[2], ["webhook-signature"] = r[3]}, r[4])
end
"""


def lua_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_requests(out, path, secret, count, per):
    """`count` signed batches of `per` new objects each, as the Lua table wrk replays."""
    hook = Webhook(secret)
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    with open(out, "w") as f:
        # LuaJIT allows 65,536 constants per function: each chunk of requests is a function.
        f.write(f"path = {lua_string(path)}\nreqs = {{}}\n")
        for i in range(count):
            if i % CHUNK == 0:
                f.write(";(function() local chunk = {\n")
            events = [{"id": f"m{i}-{j}", "notification": {
                "account": ACCOUNT, "action": "PutObject", "bucket": BUCKET,
                "object": {"key": f"docs/{i}/{j}/report.pdf", "size": 1234, "eTag": f"{i:08x}{j:08x}"},
                "eventTime": "2026-11-20T19:36:44.379Z"}} for j in range(per)]
            body = json.dumps({"events": events}, separators=(",", ":"))
            message_id = f"msg_{i}"
            signature = hook.sign(message_id, now, body)
            f.write("{" + ",".join(lua_string(v) for v in (message_id, str(int(now.timestamp())), signature, body)) + "},\n")
            if i % CHUNK == CHUNK - 1 or i == count - 1:
                f.write("} for _, r in ipairs(chunk) do reqs[#reqs + 1] = r end end)()\n")


def wait_ready(port, process):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server on port {port} exited")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the server on port {port} never answered")


def load(port, requests_file, seconds, replay):
    """Requests per second `wrk` got from the server on `port`."""
    run = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c8", f"-d{seconds}s", "-s", str(replay),
                          f"http://127.0.0.1:{port}", "--", str(requests_file)], capture_output=True, text=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
    if run.returncode != 0 or not match:
        sys.exit(f"wrk failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    return float(match.group(1))


def run_server(args, port, requests_file, seconds, replay):
    process = subprocess.Popen(["taskset", "-c", "0", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, process)
        return load(port, requests_file, seconds, replay)
    finally:
        process.terminate()
        process.wait(timeout=30)


def count(db, table):
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, type=Path)
    parser.add_argument("--peer", required=True, type=Path)
    parser.add_argument("--per", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--requests", type=int)
    args = parser.parse_args()
    requests = args.requests or (8000 if args.per >= 100 else 200000)
    node = ROOT / "tests" / "worker" / "node_modules" / ".bin" / "node"
    for tool, hint in ((shutil.which("wrk"), "Debian's wrk package"), (shutil.which("taskset"), "util-linux"),
                       (node if node.exists() else None, "scripts/setup-worker-toolchain installs it")):
        if tool is None:
            sys.exit(f"missing: {hint}")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the server on one, wrk on the other")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        created = json.loads(subprocess.run(
            [str(args.bin), "integrations", "create", "--provider", "r2", "--bucket", BUCKET,
             "--account", ACCOUNT, "--data-dir", str(tmp / "ours"), "--json"],
            capture_output=True, text=True, check=True).stdout)
        requests_file, replay = tmp / "requests.lua", tmp / "replay.lua"
        replay.write_text(REPLAY_LUA)
        write_requests(requests_file, f"/v1/integrations/{created['id']}/events", created["secret"],
                       requests, args.per)
        ours = run_server([str(args.bin), "serve", "--listen", "127.0.0.1:18801", "--data-dir", str(tmp / "ours")],
                          18801, requests_file, args.seconds, replay)
        our_jobs = count(tmp / "ours" / "relay.db", "jobs")
        peer = run_server([str(node), str(args.peer / "node-receiver.mjs"), "18802", str(tmp / "peer.db"),
                           created["id"], created["secret"], BUCKET], 18802, requests_file, args.seconds, replay)
        peer_jobs = count(tmp / "peer.db", "outbox")
    note = ""
    if max(ours, peer) * args.seconds > requests:
        note = f" (more answers than the {requests} unique requests: new jobs/s is understated; raise --requests)"
    print(f"events/request {args.per}: ours {ours:.0f} req/s ({ours * args.per:.0f} events/s, "
          f"{our_jobs / args.seconds:.0f} new jobs/s), node peer {peer:.0f} req/s ({peer * args.per:.0f} events/s, "
          f"{peer_jobs / args.seconds:.0f} new jobs/s), ratio {ours / peer:.2f}x{note}")


if __name__ == "__main__":
    main()

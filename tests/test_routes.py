"""Per-folder routes, end to end: objects under each route's prefix become `ingest-job/v2` jobs
carrying the route, its parameters and its output prefix; everything else the integration's
default. `--job-schema v1` keeps writing v1 for a pipeline not yet upgraded. Every job read here
(and everywhere in the suite) is checked against docs/schemas' JSON Schema for its version."""

import json
import subprocess

from support import R2_ACCOUNT, RELAY_BIN, Receiver, r2_event, valid_job


def route(receiver, *args, check=True):
    return receiver.cli("integrations", "route", *args, check=check)


def routed(receiver, created):
    route(receiver, "add", created["id"], "--prefix", "invoices/", "--param", "tier=premium",
          "--param", "language=de", "--output-prefix", "out/invoices/")
    route(receiver, "add", created["id"], "--prefix", "scans/", "--param", "tier=basic")
    return route(receiver, "default", created["id"], "--param", "tier=standard")


def test_objects_under_each_prefix_carry_their_route(receiver):
    created = receiver.create("r2", "uploads", "--account", R2_ACCOUNT, "--output-prefix", "results/")
    listed = routed(receiver, created)
    assert [r["prefix"] for r in listed["routes"]] == ["invoices/", "scans/"]
    assert listed["default_params"] == {"tier": "standard"} and listed["default_output_prefix"] == "results/"

    keys = ["invoices/2026/a.pdf", "scans/b.png", "other/c.txt", "out/invoices/a.json", "results/x.json"]
    answer = receiver.post_batch(created["id"], created["secret"], [r2_event(k) for k in keys]).json()
    outcomes = {k: (r["outcome"], r["reason"]) for k, r in zip(keys, answer["results"])}
    assert outcomes["out/invoices/a.json"] == ("skipped", "loop_protection"), "a route's output is no job"
    assert outcomes["results/x.json"] == ("skipped", "loop_protection")
    jobs = {job["key"]: job for job in receiver.jobs()}
    assert sorted(jobs) == ["invoices/2026/a.pdf", "other/c.txt", "scans/b.png"]
    assert all(job["schema"] == "ingest-job/v2" for job in jobs.values())
    invoice = jobs["invoices/2026/a.pdf"]
    assert (invoice["route"], invoice["params"], invoice["output_prefix"]) == \
        ("invoices/", {"language": "de", "tier": "premium"}, "out/invoices/")
    scan = jobs["scans/b.png"]
    assert (scan["route"], scan["params"], scan["output_prefix"]) == ("scans/", {"tier": "basic"}, None)
    other = jobs["other/c.txt"]
    assert (other["route"], other["params"], other["output_prefix"]) == (None, {"tier": "standard"}, "results/")

    shown = receiver.cli("integrations", "show", created["id"])
    assert [r["prefix"] for r in shown["routes"]] == ["invoices/", "scans/"]
    text = subprocess.run([str(RELAY_BIN), "--data-dir", str(receiver.data_dir), "integrations", "route", "list",
                           created["id"]], capture_output=True, text=True, env=receiver.env).stdout
    assert "invoices/  language=de, tier=premium  -> out/invoices/" in text


def test_a_route_that_would_loop_or_break_a_limit_is_refused_by_name(receiver):
    created = receiver.create("s3", "docs", "--prefix", "in/")
    cases = [
        (["--prefix", "in/a/", "--output-prefix", "in/results/"], "output_under_watched_prefix"),
        (["--prefix", "in/a/", "--param", "Tier=x"], "bad_param_name"),
        (["--prefix", "in/a/", "--param", "notes"], "is not name=value"),
        (["--prefix", "in/a/", "--param", "tier=" + "x" * 1025], "param_value_too_long"),
    ]
    for args, name in cases:
        refused = route(receiver, "add", created["id"], *args, check=False)
        assert refused.returncode in (1, 2) and name in refused.stderr, (args, refused.stderr)
    removed = route(receiver, "remove", created["id"], "--prefix", "nope/", check=False)
    assert removed.returncode == 1 and "no_such_route" in removed.stderr
    assert receiver.cli("integrations", "show", created["id"]).get("routes") is None, "nothing was stored"


def test_job_schema_v1_keeps_the_pipeline_s_old_messages(tmp_path):
    relay = Receiver(tmp_path / "relay", tmp_path / "serve.log", env={"RELAY_JOB_SCHEMA": "v1"})
    relay.start()
    try:
        created = relay.create("r2", "uploads")
        route(relay, "add", created["id"], "--prefix", "in/", "--param", "tier=premium")
        relay.post_batch(created["id"], created["secret"], [r2_event("in/a.pdf")])
        [job] = relay.jobs()
        assert job["schema"] == "ingest-job/v1" and "route" not in job and "params" not in job
    finally:
        relay.stop()


def test_routes_are_stored_on_dynamodb_too(aws_receiver, aws_stack):
    created = aws_receiver.create("r2", "uploads")
    routed(aws_receiver, created)
    aws_receiver.post_batch(created["id"], created["secret"], [r2_event("invoices/a.pdf")])
    [message] = aws_stack.messages()
    job = valid_job(json.loads(message["Body"]))
    assert job["route"] == "invoices/" and job["params"]["tier"] == "premium"

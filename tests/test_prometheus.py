"""deploy/: the Prometheus alert rules (checked and unit tested by the real `promtool`) and the
Grafana dashboard, held to the metrics the receiver declares (the contract's
`prometheus_metrics`) and to the CloudWatch alarms they mirror."""

import json
import re
import shutil
import subprocess

import yaml

from relay_contract import ROOT, contract

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "bucket-relay.json"
PROMTOOL = shutil.which("promtool")
METRICS = {m["name"]: m for m in contract()["prometheus_metrics"]}

# Each CloudWatch alarm of the receiver module, and the Prometheus alert that watches the same
# thing for `serve` (None: it watches something `serve` does not have).
MIRRORS = {
    "dlq_depth": None,  # SQS's ingest dead-letter queue; the embedded queue has none
    "lambda_errors": "BucketRelayDown",
    "lambda_throttles": None,  # Lambda's concurrency; `serve` queues connections instead
    "lambda_duration": "BucketRelaySlowRequests",
    "lookups_failed": "BucketRelayObjectLookupsFailed",
    "rejected": "BucketRelayEventsRejected",
    "poller_errors": "BucketRelayPollFailing",
    "poller_duration": "BucketRelayPollFailing",  # a tick past its limits fails as listing_too_long
    "poller_stopped": "BucketRelayDown",  # serve's ticks run in-process
    "missed_by_events": "BucketRelayMissedByEvents",
    "integration_errors": "BucketRelayIntegrationErrorShare",
    "queue_age": None,  # SQS's ingest queue; the embedded queue is read with `jobs list`
    "queue_depth": None,  # the same
}


def promtool(*args, cwd=None):
    assert PROMTOOL, "scripts/test installs promtool (Debian's prometheus package)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd)


def metric_names(expression):
    """The receiver's metric names an expression reads (a histogram's by its base name)."""
    names = set(re.findall(r"\bbucket_relay_[a-z_]+", expression))
    return {re.sub(r"_(bucket|count|sum)$", "", name) if name not in METRICS else name for name in names}


def test_the_alert_rules_pass_promtools_check_and_their_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "rules.test.yml", cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_reads_only_metrics_the_receiver_publishes_and_mirrors_an_alarm():
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for rule in rules}
    for rule in rules:
        unknown = metric_names(rule["expr"]) - set(METRICS)
        assert not unknown, f"{rule['alert']} reads {unknown}"
    [share] = [rule for rule in rules if rule["alert"] == "BucketRelayIntegrationErrorShare"]
    assert share["expr"].strip().endswith(f"> {contract()['error_share_alarm']}"), "the threshold `status` flags"
    test_names = re.findall(r"alertname: (\w+)", (RULES.parent / "rules.test.yml").read_text())
    assert set(test_names) == alerts, "every alert has a unit test"

    from test_terraform import load_module
    alarms = set(load_module("receiver")["resource"]["aws_cloudwatch_metric_alarm"])
    assert alarms == set(MIRRORS), "a new CloudWatch alarm needs its Prometheus mirror (or why not)"
    assert {alert for alert in MIRRORS.values() if alert} <= alerts


def test_the_dashboard_is_valid_and_charts_only_published_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    charted = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and not names - set(METRICS), (panel["title"], names)
            charted |= names
    # Every counter and the latency histogram has a chart.
    assert charted == set(METRICS), set(METRICS) - charted

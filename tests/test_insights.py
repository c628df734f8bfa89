"""The receiver module's per-integration error signal: a Contributor Insights rule over the
receiver's own `request` log lines, evaluated here as CloudWatch evaluates a `Sum` rule
(filters, keys, the summed field) against lines captured from a real run, and the alarm on the
rule's MaxContributorValue (AWS's metric math `INSIGHT_RULE_METRIC`)."""

import json

from support import R2_ACCOUNT, r2_event
from test_terraform import MODULES, first, load_module

MISSING = object()


def field(line, path):
    """A log line's field by JSON property path (`$.a.b`), as Contributor Insights reads it."""
    assert path.startswith("$."), path
    value = line
    for part in path[2:].split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def matches(line, rule_filter):
    value = field(line, rule_filter["Match"])
    if "In" in rule_filter:
        return value in rule_filter["In"]
    if "IsPresent" in rule_filter:
        return (value is not MISSING) == rule_filter["IsPresent"]
    raise AssertionError(f"an operator this test does not evaluate: {rule_filter}")


def evaluate(rule, lines):
    """{contributor (key values): sum of ValueOf} over the lines the filters keep."""
    contribution = rule["Contribution"]
    sums = {}
    for line in lines:
        if not all(matches(line, f) for f in contribution["Filters"]):
            continue
        key = tuple(field(line, k) for k in contribution["Keys"])
        assert MISSING not in key, line
        value = field(line, contribution["ValueOf"])
        assert isinstance(value, (int, float)) and not isinstance(value, bool), line
        sums[key] = sums.get(key, 0) + value
    return sums


def send(relay, integration, accepted, rejected):
    events = [r2_event(f"in/ok-{i}.pdf", bucket=integration["bucket"]) for i in range(accepted)]
    events += [r2_event(f"in/bad-{i}.pdf", bucket="elsewhere") for i in range(rejected)]
    answer = relay.post_batch(integration["id"], integration["secret"], events)
    assert answer.status_code == 200


def test_the_rule_sums_to_above_zero_only_for_the_integration_refused_more_than_half_the_time(receiver):
    module = load_module("receiver")
    resource = module["resource"]["aws_cloudwatch_contributor_insight_rule"]["integration_errors"]
    definition = resource["rule_definition"]
    assert "contributor-insights.json.tftpl" in definition
    assert "aws_cloudwatch_log_group.receiver.name" in definition, "the receiver's own log group"
    template = (MODULES / "receiver" / "contributor-insights.json.tftpl").read_text()
    rule = json.loads(template.replace("${log_group}", "/aws/lambda/bucket-relay"))
    # PutInsightRule's limits and the rule syntax's fixed parts.
    assert len(template) <= 8192 and template.isascii()
    assert rule["Schema"] == {"Name": "CloudWatchLogRule", "Version": 1}
    assert (rule["LogFormat"], rule["AggregateOn"]) == ("JSON", "Sum")
    assert len(rule["Contribution"]["Keys"]) <= 4 and len(rule["Contribution"]["Filters"]) <= 4

    integrations = {}
    for name in ("good", "bad", "even"):
        created = receiver.create("r2", f"{name}-bucket", "--account", R2_ACCOUNT)
        integrations[name] = {**created, "bucket": f"{name}-bucket"}
    send(receiver, integrations["good"], accepted=3, rejected=1)
    send(receiver, integrations["bad"], accepted=1, rejected=1)
    send(receiver, integrations["bad"], accepted=0, rejected=2)
    send(receiver, integrations["even"], accepted=2, rejected=2)
    sums = evaluate(rule, receiver.log_lines())
    assert sums == {(integrations["good"]["id"],): -2, (integrations["bad"]["id"],): 2,
                    (integrations["even"]["id"],): 0}
    top = max(sums, key=sums.get)
    assert top == (integrations["bad"]["id"],) and sums[top] > 0, "MaxContributorValue is the bad one's"

    alarm = module["resource"]["aws_cloudwatch_metric_alarm"]["integration_errors"]
    query = first(alarm["metric_query"])
    expression = query["expression"]
    assert expression.startswith("INSIGHT_RULE_METRIC(") and '"MaxContributorValue"' in expression.replace('\\"', '"')
    assert "aws_cloudwatch_contributor_insight_rule.integration_errors.rule_name" in expression
    assert (query["period"], query["return_data"]) == (3600, True)
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"]

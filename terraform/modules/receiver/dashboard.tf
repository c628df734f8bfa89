# The on-call engineer's one screen, and the ingest queue's alarms.
#
# The dashboard (dashboard.json.tftpl): events by outcome and the refusals by reason (the
# receiver's EMF metrics), requests and handler latency p50/p99, the ingest queue's depth and the
# age of its oldest job, the dead-letter queue, the poller's runs and errors with missed_by_events,
# failed object lookups, and the function's errors, throttles and concurrency. Every metric it
# names is one the receiver, a metric filter of this module or AWS publishes (a test holds it to
# the contract).

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    region            = local.region
    namespace         = local.metrics_ns
    receiver_function = aws_lambda_function.receiver.function_name
    poller_function   = local.poller_name
    queue             = aws_sqs_queue.ingest.name
    dlq               = aws_sqs_queue.dlq.name
  })
}

# The pipeline stopped taking jobs: the oldest waits longer than it should.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${var.name}-ingest-queue-stalled"
  alarm_description   = "The oldest job on the ingest queue has waited longer than queue_age_alarm_seconds: the pipeline stopped consuming (or cannot keep up). Nothing is lost until the queue's retention."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.ingest.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_age_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# The runbook's "> 1000 messages for 10 min": two 5-minute periods over the threshold.
resource "aws_cloudwatch_metric_alarm" "queue_depth" {
  alarm_name          = "${var.name}-ingest-queue-backlog"
  alarm_description   = "More than queue_depth_alarm_messages jobs have waited on the ingest queue for 10 minutes: the pipeline is behind."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.ingest.name }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_depth_alarm_messages
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# The runbook's "one integration's error rate above 50 % for an hour", without one metric per
# integration: a Contributor Insights rule sums each `request` line's `refused_balance` (its
# rejected and retried events less the others) per integration. An integration's sum over an
# hour is above zero exactly when more than half of its events were refused or retried, so the
# top contributor's value (MaxContributorValue) above zero is the alarm.
resource "aws_cloudwatch_contributor_insight_rule" "integration_errors" {
  rule_name  = "${var.name}-integration-errors"
  rule_state = "ENABLED"
  rule_definition = templatefile("${path.module}/contributor-insights.json.tftpl", {
    log_group = aws_cloudwatch_log_group.receiver.name
  })
}

resource "aws_cloudwatch_metric_alarm" "integration_errors" {
  alarm_name          = "${var.name}-integration-error-share"
  alarm_description   = "Over the last hour, more than half of one integration's events were refused or retried: Contributor Insights rule ${var.name}-integration-errors names it (bucket-relay status too)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "worst"
    expression  = "INSIGHT_RULE_METRIC(\"${aws_cloudwatch_contributor_insight_rule.integration_errors.rule_name}\", \"MaxContributorValue\")"
    label       = "Refused or retried less the others, worst integration, last hour"
    period      = 3600
    return_data = true
  }
}

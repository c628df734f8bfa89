# Internal: how a customer's EventBridge rule reaches the Bucket Relay receiver, shared by
# s3-source (one bucket's rule on the default bus) and org-source (the central bus's rule). The
# rule → an API destination (Authorization: Bearer <event source secret>, https, rate limited),
# invoked with a role that may invoke only it → retries for up to 24 h / 185 attempts → an
# encrypted dead-letter queue only that rule may write to, with an alarm while it holds events.
#
# The calling modules had these resources themselves: their `moved` blocks (moved.tf) carry the
# state over, so an upgrade replaces nothing.

data "aws_caller_identity" "current" {}

resource "aws_cloudwatch_event_connection" "receiver" {
  name               = "${var.name}-receiver"
  description        = "Bucket Relay receiver: the integration's event source secret as a bearer token"
  authorization_type = "API_KEY"

  auth_parameters {
    api_key {
      key   = "Authorization"
      value = "Bearer ${var.event_source_secret}"
    }
  }
}

resource "aws_cloudwatch_event_api_destination" "receiver" {
  name                             = "${var.name}-receiver"
  description                      = "Bucket Relay receiver events URL"
  invocation_endpoint              = var.events_url
  http_method                      = "POST"
  invocation_rate_limit_per_second = var.invocation_rate_limit_per_second
  connection_arn                   = aws_cloudwatch_event_connection.receiver.arn
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = var.dlq_kms_key_arn
  sqs_managed_sse_enabled   = var.dlq_kms_key_arn == null ? true : null
  tags                      = var.tags
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeDeadLettersTheRule"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.rule_arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

# The dead-letter queue holds events EventBridge gave up on: the alarm says so while
# `bucket-relay replay eventbridge` can still put them through (SQS keeps them 14 days).
resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "${var.events_of} that EventBridge could not deliver to Bucket Relay are in ${aws_sqs_queue.dlq.name}: fix the cause, then run bucket-relay replay eventbridge --dlq-url ${aws_sqs_queue.dlq.url} within 14 days."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

data "aws_iam_policy_document" "assume_events" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "invoke" {
  name               = "${var.name}-invoke"
  assume_role_policy = data.aws_iam_policy_document.assume_events.json
  tags               = var.tags
}

data "aws_iam_policy_document" "invoke" {
  statement {
    sid       = "InvokeTheReceiver"
    actions   = ["events:InvokeApiDestination"]
    resources = ["${aws_cloudwatch_event_api_destination.receiver.arn}*"]
  }
}

resource "aws_iam_role_policy" "invoke" {
  name   = "${var.name}-invoke"
  role   = aws_iam_role.invoke.id
  policy = data.aws_iam_policy_document.invoke.json
}

resource "aws_cloudwatch_event_target" "receiver" {
  rule           = var.rule_name
  event_bus_name = var.event_bus_name
  arn            = aws_cloudwatch_event_api_destination.receiver.arn
  role_arn       = aws_iam_role.invoke.arn

  retry_policy {
    maximum_event_age_in_seconds = var.maximum_event_age_seconds
    maximum_retry_attempts       = var.maximum_retry_attempts
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

# The organization side, in the management (or a delegated administrator) account: every member
# account's S3 events → (StackSet rules, stackset.tf) → one central event bus here, whose policy
# admits only the organization → a rule → API destination (Authorization: Bearer <event source
# secret>) → the Bucket Relay receiver. Events EventBridge cannot deliver after its retries land
# in an encrypted dead-letter queue with an alarm. Optionally an organization trail (trail.tf)
# logs S3 object writes, whose CloudTrail events take the same way.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # EventBridge content filtering: each pattern a wildcard filter (one without * matches the name
  # exactly); ["*"] filters nothing. (`terraform console` shows the pattern: jsonencode(local.object_written).)
  every_bucket   = contains(var.bucket_patterns, "*")
  bucket_filters = [for pattern in var.bucket_patterns : { wildcard = pattern }]
  # What is forwarded, by the members' rules and again by the central bus's: S3's own "Object
  # Created" events, and the CloudTrail events of object writes (the organization trail's).
  written = ["PutObject", "CopyObject", "CompleteMultipartUpload"]
  object_written = {
    "$or" = [
      merge(
        { source = ["aws.s3"], "detail-type" = ["Object Created"] },
        local.every_bucket ? {} : { detail = { bucket = { name = local.bucket_filters } } },
      ),
      {
        source        = ["aws.s3"]
        "detail-type" = ["AWS API Call via CloudTrail"]
        detail = merge(
          { eventSource = ["s3.amazonaws.com"], eventName = local.written },
          local.every_bucket ? {} : { requestParameters = { bucketName = local.bucket_filters } },
        )
      },
    ]
  }
}

resource "aws_cloudwatch_event_bus" "central" {
  name = "${var.name}-central"
  tags = var.tags
}

# Any principal of the organization may put events here, and nobody else. (Member accounts'
# rules send with a role of their own account, see stackset.tf.)
data "aws_iam_policy_document" "central_bus" {
  statement {
    sid       = "OrganizationMembersPutEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.central.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalOrgID"
      values   = [var.organization_id]
    }
  }
}

resource "aws_cloudwatch_event_bus_policy" "central" {
  event_bus_name = aws_cloudwatch_event_bus.central.name
  policy         = data.aws_iam_policy_document.central_bus.json
}

resource "aws_cloudwatch_event_rule" "to_receiver" {
  name           = "${var.name}-to-receiver"
  description    = "New objects in the organization's buckets, for Bucket Relay"
  event_bus_name = aws_cloudwatch_event_bus.central.name
  event_pattern  = jsonencode(local.object_written)
  tags           = var.tags
}

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
      values   = [aws_cloudwatch_event_rule.to_receiver.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "Events of the organization's buckets that EventBridge could not deliver to Bucket Relay are in ${aws_sqs_queue.dlq.name}: fix the cause, then run bucket-relay replay eventbridge --dlq-url ${aws_sqs_queue.dlq.url} within 14 days."
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
  rule           = aws_cloudwatch_event_rule.to_receiver.name
  event_bus_name = aws_cloudwatch_event_bus.central.name
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

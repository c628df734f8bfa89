# The poller: poll mode's ticks and event mode's safety nets. The receiver's own zip runs as a
# second function with RELAY_LAMBDA_HANDLER=poll, invoked by an EventBridge Scheduler schedule.
# Each invocation is one tick over every active poll-mode integration and every safety net that is
# due (`set-mode ID event --safety-net 1h`): it assumes each customer's read role (with the
# integration's external id) or opens its sealed R2 token, lists the bucket, and enqueues what is
# new through the same ledger and queue as the receiver.

locals {
  poller_name      = "${var.name}-poller"
  poller_log_group = "/aws/lambda/${var.name}-poller"
}

resource "aws_cloudwatch_log_group" "poller" {
  count             = var.poll_enabled ? 1 : 0
  name              = local.poller_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_iam_role" "poller" {
  count              = var.poll_enabled ? 1 : 0
  name               = local.poller_name
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

data "aws_iam_policy_document" "poller" {
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.poller_log_group}:*"]
  }

  statement {
    sid       = "ListAndReadIntegrations"
    actions   = ["dynamodb:Scan", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.integrations.arn]
  }

  statement {
    sid = "ClaimCompleteCountAndKeepWatermarksInTheLedger"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem", # a commit after mostly duplicates reads before it claims
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:BatchWriteItem",
    ]
    resources = [aws_dynamodb_table.ledger.arn]
  }

  statement {
    sid       = "SendJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn]
  }

  statement {
    sid       = "ReadTheMasterKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.master_key.arn]
  }

  statement {
    sid       = "UseTheStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.this.arn]
  }

  # Customers' read roles live in their accounts, so their ARNs are not known here. The poller
  # may assume a role only with one of our external ids (every one starts with "brx-") and under
  # its own session name; each customer's trust policy then admits exactly their integration's id.
  statement {
    sid       = "AssumeCustomerReadRolesWithOurExternalId"
    actions   = ["sts:AssumeRole"]
    resources = var.poll_read_role_arns
    condition {
      test     = "StringLike"
      variable = "sts:ExternalId"
      values   = ["brx-*"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:RoleSessionName"
      values   = ["bucket-relay-lister"]
    }
  }
}

resource "aws_iam_role_policy" "poller" {
  count  = var.poll_enabled ? 1 : 0
  name   = local.poller_name
  role   = aws_iam_role.poller[0].id
  policy = data.aws_iam_policy_document.poller.json
}

resource "aws_lambda_function" "poller" {
  # checkov:skip=CKV_AWS_116: a failed tick is not worth keeping: the next tick, minutes later, lists the same bucket from the same watermark
  # checkov:skip=CKV_AWS_117: the poller reaches only AWS and R2 APIs over TLS with signed requests; a VPC would add NAT cost for no private resource
  # checkov:skip=CKV_AWS_272: the zip is built from this repository by scripts/package-lambda; code signing needs an AWS Signer profile the operator may add
  # checkov:skip=CKV_AWS_50: X-Ray needs xray:PutTraceSegments on "*"; the poller's poll_tick log lines carry its timings instead
  # checkov:skip=CKV_AWS_115: ticks never overlap without a reservation: the timeout is shorter than the schedule's interval (validated), and a reservation fails in accounts with a small concurrency quota
  count         = var.poll_enabled ? 1 : 0
  function_name = local.poller_name
  description   = "Bucket Relay poller: lists poll-mode integrations' buckets, and safety nets', into ingest jobs"
  role          = aws_iam_role.poller[0].arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  filename      = var.lambda_zip_path
  # The same zip as the receiver's function.
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.poll_timeout
  kms_key_arn      = aws_kms_key.this.arn

  environment {
    variables = {
      RELAY_LAMBDA_HANDLER       = "poll"
      RELAY_BACKEND              = "aws"
      RELAY_INTEGRATIONS_TABLE   = aws_dynamodb_table.integrations.name
      RELAY_LEDGER_TABLE         = aws_dynamodb_table.ledger.name
      RELAY_QUEUE_URL            = aws_sqs_queue.ingest.url
      RELAY_MASTER_KEY_SECRET_ID = aws_secretsmanager_secret.master_key.arn
      RELAY_LOG                  = var.log_level
      RELAY_JOB_SCHEMA           = var.job_schema
    }
  }

  depends_on = [aws_cloudwatch_log_group.poller, aws_iam_role_policy.poller]
  tags       = var.tags
}

# The scheduler invokes asynchronously. A failed tick is not retried (the next one lists the
# same bucket again), so no retry overlaps the next tick.
resource "aws_lambda_function_event_invoke_config" "poller" {
  count                        = var.poll_enabled ? 1 : 0
  function_name                = aws_lambda_function.poller[0].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

data "aws_iam_policy_document" "assume_scheduler" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count              = var.poll_enabled ? 1 : 0
  name               = "${var.name}-poll-schedule"
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeThePoller"
    actions   = ["lambda:InvokeFunction"]
    resources = ["arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.poller_name}"]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count  = var.poll_enabled ? 1 : 0
  name   = "${var.name}-poll-schedule"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "poll" {
  # checkov:skip=CKV_AWS_297: the schedule's input is empty (the poller reads everything from its tables); there is nothing for a customer managed key to protect
  count                        = var.poll_enabled ? 1 : 0
  name                         = "${var.name}-poll"
  description                  = "One poll tick over every active poll-mode integration and each safety net that is due"
  schedule_expression          = "rate(${var.poll_every_minutes} minutes)"
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.poller[0].arn
    role_arn = aws_iam_role.scheduler[0].arn
    input    = jsonencode({})

    retry_policy {
      maximum_retry_attempts       = 0
      maximum_event_age_in_seconds = 60
    }
  }
}

# --- the poller's alarms --------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "poller_errors" {
  count               = var.poll_enabled ? 1 : 0
  alarm_name          = "${local.poller_name}-errors"
  alarm_description   = "A poll tick failed for at least one integration: see the poller's poll_failed log lines (error names the cause, e.g. list_denied, assume_role_denied)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.poller[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "poller_duration" {
  count               = var.poll_enabled ? 1 : 0
  alarm_name          = "${local.poller_name}-duration-near-timeout"
  alarm_description   = "A poll tick used more than 80% of its timeout: a bucket listing is slow or large (poll mode lists the whole prefix every tick)."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.poller[0].function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.poll_timeout * 1000 * 0.8
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "poller_stopped" {
  count               = var.poll_enabled ? 1 : 0
  alarm_name          = "${local.poller_name}-not-running"
  alarm_description   = "The poller was not invoked for 15 minutes: the schedule is disabled or cannot invoke it."
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.poller[0].function_name }
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# Safety nets (`set-mode ID event --safety-net 1h`): each object a scheduled listing made a job
# of because no event brought it is one `missed_by_events` line (integration, bucket, key): an
# event path upstream is losing objects (EventBridge gave up, a rule was switched off, CloudTrail
# dropped them). The jobs are made; the alarm says the notifications cannot be trusted alone.
resource "aws_cloudwatch_log_metric_filter" "missed_by_events" {
  count          = var.poll_enabled ? 1 : 0
  name           = "${var.name}-missed-by-events"
  log_group_name = aws_cloudwatch_log_group.poller[0].name
  pattern        = "{ $.message = \"missed_by_events\" }"

  metric_transformation {
    name      = "missed_by_events"
    namespace = local.metrics_ns
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "missed_by_events" {
  count               = var.poll_enabled ? 1 : 0
  alarm_name          = "${var.name}-missed-by-events"
  alarm_description   = "A safety-net listing found objects no event brought and made their jobs: see the poller's missed_by_events log lines (integration_id, key) and check that integration's event source."
  namespace           = local.metrics_ns
  metric_name         = aws_cloudwatch_log_metric_filter.missed_by_events[0].metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# The Bucket Relay receiver on AWS: the Lambda behind a function URL, its tables, queues, master
# key secret, KMS key, logs and alarms. The environment variable names are the receiver's own
# (receiver/src/env.rs); tests/test_terraform.py checks they match.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  region      = data.aws_region.current.region
  partition   = data.aws_partition.current.partition
  queue_name  = var.fifo_queue ? "${var.name}-ingest.fifo" : "${var.name}-ingest"
  dlq_name    = var.fifo_queue ? "${var.name}-ingest-dlq.fifo" : "${var.name}-ingest-dlq"
  log_group   = "/aws/lambda/${var.name}"
  metrics_ns  = "BucketRelay"
  metrics_dim = { service = "bucket-relay" }
}

# --- encryption ----------------------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: a key policy's resource "*" is this key only; the account root administers it, as AWS's default key policy does
  # checkov:skip=CKV_AWS_111: a key policy's resource "*" is this key only; service principals are limited to the actions they need
  # checkov:skip=CKV_AWS_356: a key policy's resource "*" is this key only (key policies cannot name other resources)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # a key policy's resource is always the key itself
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsTheLogGroup"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    # Each log group the key encrypts: the receiver's, and the poller's (poller.tf).
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group}",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.poller_log_group}",
      ]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: queues, tables, secret, logs and alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# --- storage: integrations and the processed-objects ledger --------------------------------

resource "aws_dynamodb_table" "integrations" {
  name                        = "${var.name}-integrations"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = var.tags
}

resource "aws_dynamodb_table" "ledger" {
  name                        = "${var.name}-ledger"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "job_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "job_id"
    type = "S"
  }

  # The receiver writes expires_at (epoch seconds): 30 days for jobs, 400 for usage counts.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }

  tags = var.tags
}

# --- the ingest queue and its dead-letter queue ---------------------------------------------

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  fifo_queue                = var.fifo_queue
  message_retention_seconds = 1209600
  kms_master_key_id         = aws_kms_key.this.arn
  tags                      = var.tags
}

resource "aws_sqs_queue" "ingest" {
  name                        = local.queue_name
  fifo_queue                  = var.fifo_queue
  content_based_deduplication = false
  visibility_timeout_seconds  = var.queue_visibility_timeout_seconds
  message_retention_seconds   = 1209600
  kms_master_key_id           = aws_kms_key.this.arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.ingest.arn]
  })
}

# --- the master key every event source secret is derived from -------------------------------

resource "aws_secretsmanager_secret" "master_key" {
  # checkov:skip=CKV2_AWS_57: rotating the master key would invalidate every integration's secret at once; secrets rotate per integration with `integrations rotate-secret --grace`
  name                    = "${var.name}/master-key"
  description             = "Bucket Relay master key (hex). Every integration's event source secret is derived from it: replacing it invalidates them all."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

# The key is made ephemeral and written write-only, so it is never stored in the Terraform state
# or plan: 64 hex digits (32 bytes), the form the receiver reads. Terraform writes it once, at
# version 1; raising secret_string_wo_version would write a new key and invalidate every
# integration's secret at once.
ephemeral "random_password" "master_key" {
  length           = 64
  lower            = false
  upper            = false
  numeric          = true
  special          = true
  override_special = "abcdef"
}

resource "aws_secretsmanager_secret_version" "master_key" {
  secret_id = aws_secretsmanager_secret.master_key.id
  # With master_key_in_kms, the keyring names the KMS keys (keys.tf) and holds no key.
  secret_string_wo         = var.master_key_in_kms ? local.kms_keyring : ephemeral.random_password.master_key.result
  secret_string_wo_version = 1
}

# --- logs ------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "receiver" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

# --- the Lambda's role: exact actions on exact resources -------------------------------------

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "receiver" {
  name               = "${var.name}-receiver"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

data "aws_iam_policy_document" "receiver" {
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.receiver.arn}:*"]
  }

  statement {
    sid       = "ReadIntegrations"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.integrations.arn]
  }

  statement {
    sid = "ClaimCompleteAndCountInTheLedger"
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
    sid = "SendJobs"
    actions = [
      "sqs:SendMessage",        # SendMessageBatch is authorised as SendMessage
      "sqs:GetQueueAttributes", # a test event's probe reads the queue's ARN; nothing is sent
    ]
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

  # A CloudTrail event in an unversioned bucket names no version of its object: the receiver
  # looks it up (HeadObject) through the customer's read role, which it may assume only with
  # one of our external ids (every one starts with "brx-") and under its own session name.
  statement {
    sid       = "AssumeCustomerReadRolesForLookups"
    actions   = ["sts:AssumeRole"]
    resources = var.lookup_read_role_arns
    condition {
      test     = "StringLike"
      variable = "sts:ExternalId"
      values   = ["brx-*"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:RoleSessionName"
      values   = ["bucket-relay-lookup"]
    }
  }
}

resource "aws_iam_role_policy" "receiver" {
  name   = "${var.name}-receiver"
  role   = aws_iam_role.receiver.id
  policy = data.aws_iam_policy_document.receiver.json
}

# --- the function and its URL ----------------------------------------------------------------

resource "aws_lambda_function" "receiver" {
  # checkov:skip=CKV_AWS_116: a DLQ only catches asynchronous invocations; the function URL invokes synchronously and the worker / EventBridge retry every non-2xx answer
  # checkov:skip=CKV_AWS_117: the receiver reaches only AWS APIs (DynamoDB, SQS, Secrets Manager) with IAM auth; a VPC would add NAT cost and cold-start time for no private resource
  # checkov:skip=CKV_AWS_272: the zip is built from this repository by scripts/package-lambda; code signing needs an AWS Signer profile the operator may add
  # checkov:skip=CKV_AWS_50: X-Ray needs xray:PutTraceSegments on "*"; the receiver's JSON logs and EMF metrics carry its timings instead
  function_name                  = var.name
  description                    = "Bucket Relay receiver: verified object events to exactly one ingest job each"
  role                           = aws_iam_role.receiver.arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  filename                       = var.lambda_zip_path
  source_code_hash               = filebase64sha256(var.lambda_zip_path)
  architectures                  = [var.architecture]
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = aws_kms_key.this.arn

  environment {
    variables = {
      RELAY_BACKEND              = "aws"
      RELAY_INTEGRATIONS_TABLE   = aws_dynamodb_table.integrations.name
      RELAY_LEDGER_TABLE         = aws_dynamodb_table.ledger.name
      RELAY_QUEUE_URL            = aws_sqs_queue.ingest.url
      RELAY_MASTER_KEY_SECRET_ID = aws_secretsmanager_secret.master_key.arn
      RELAY_LOG                  = var.log_level
      RELAY_METRICS              = "emf"
      RELAY_JOB_SCHEMA           = var.job_schema
    }
  }

  depends_on = [aws_cloudwatch_log_group.receiver, aws_iam_role_policy.receiver]
  tags       = var.tags
}

# Authorization NONE by design: every request must carry the integration's event source secret
# (a Standard Webhooks signature or the EventBridge bearer secret), checked before anything else.
resource "aws_lambda_function_url" "receiver" {
  # checkov:skip=CKV_AWS_258: authorization NONE by design: every request must carry the integration's event source secret, verified before anything else
  function_name      = aws_lambda_function.receiver.function_name
  authorization_type = "NONE"
}

# A NONE function URL answers 403 to everyone until the function's resource policy makes it
# public. Since October 2025 Lambda requires both statements: InvokeFunctionUrl for the URL's
# auth type, and InvokeFunction when invoked through the URL.
resource "aws_lambda_permission" "function_url_public" {
  # checkov:skip=CKV_AWS_301: the function URL is public by design (senders authenticate with the event source secret); this statement is limited to function URL requests of auth type NONE
  statement_id           = "FunctionUrlPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.receiver.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "function_url_invoke" {
  # checkov:skip=CKV_AWS_301: the function URL is public by design (senders authenticate with the event source secret); this statement applies only to invocations through the function URL
  statement_id             = "FunctionUrlInvokeFunction"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.receiver.function_name
  principal                = "*"
  invoked_via_function_url = true
}

# --- alarms ------------------------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "Jobs the pipeline failed to process landed in the dead-letter queue."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${var.name}-errors"
  alarm_description   = "The receiver failed invocations (not answered by the handler)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.receiver.function_name }
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

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  alarm_name          = "${var.name}-throttles"
  alarm_description   = "Requests were throttled: raise reserved_concurrency (or the account's concurrency quota). Senders retry, so nothing is lost, but events are delayed."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.receiver.function_name }
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

resource "aws_cloudwatch_metric_alarm" "lambda_duration" {
  alarm_name          = "${var.name}-duration-near-timeout"
  alarm_description   = "The slowest invocation used more than 80% of the timeout: a backend is slow."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.receiver.function_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.timeout * 1000 * 0.8
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# A CloudTrail event whose object could not be looked up got its own event id as version: the
# same object may become a second job through its S3 event. The log lines name the cause.
resource "aws_cloudwatch_log_metric_filter" "lookups_failed" {
  name           = "${var.name}-object-lookups-failed"
  log_group_name = aws_cloudwatch_log_group.receiver.name
  pattern        = "{ $.message = \"object_lookup_failed\" }"

  metric_transformation {
    name      = "object_lookups_failed"
    namespace = local.metrics_ns
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "lookups_failed" {
  alarm_name          = "${var.name}-object-lookups-failed"
  alarm_description   = "Objects of CloudTrail events could not be looked up through the customer's read role, so an object may have become two jobs: see the receiver's object_lookup_failed log lines (cause, role_arn)."
  namespace           = local.metrics_ns
  metric_name         = aws_cloudwatch_log_metric_filter.lookups_failed.metric_transformation[0].name
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

# One alarm per reason, on the receiver's embedded metrics (one EMF line per request).
resource "aws_cloudwatch_metric_alarm" "rejected" {
  for_each = toset(var.rejected_reason_alarms)

  alarm_name          = "${var.name}-rejected-${each.key}"
  alarm_description   = "Events or requests refused as ${each.key}: see the receiver's event_rejected / request log lines with reason ${each.key}."
  namespace           = local.metrics_ns
  metric_name         = "reason_${each.key}"
  dimensions          = local.metrics_dim
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

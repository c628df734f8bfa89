# The customer side for an S3 bucket: S3 "Object Created" events → EventBridge rule → API
# destination (Authorization: Bearer <event source secret>) → the Bucket Relay receiver. Events
# EventBridge cannot deliver after its retries land in an encrypted SQS dead-letter queue.

locals {
  # The rule matches the key as the event carries it, which may be URL-encoded (see docs/contract.md,
  # "Keys, per source"). A prefix or suffix made only of characters no encoding changes matches
  # either way; any other is left out of the rule, and the receiver, which reads the key first,
  # filters exactly. A filter here only saves deliveries; it must never drop an event.
  unchanged_by_encoding = "^[A-Za-z0-9._~/-]+$"
  rule_prefix           = var.prefix != null && can(regex(local.unchanged_by_encoding, coalesce(var.prefix, "-"))) ? var.prefix : null
  rule_suffixes         = alltrue([for s in var.suffixes : can(regex(local.unchanged_by_encoding, s))]) ? var.suffixes : []

  # EventBridge content filtering: prefix and suffix together need a wildcard pattern
  # ("in/*.pdf"); a suffix list is an OR of patterns.
  key_filters = (
    local.rule_prefix != null && length(local.rule_suffixes) > 0 ? [for s in local.rule_suffixes : { wildcard = "${local.rule_prefix}*${s}" }] :
    local.rule_prefix != null ? [{ prefix = local.rule_prefix }] :
    length(local.rule_suffixes) > 0 ? [for s in local.rule_suffixes : { suffix = s }] :
    null
  )

  detail = merge(
    { bucket = { name = [var.bucket_name] } },
    local.key_filters == null ? {} : { object = { key = local.key_filters } },
  )
}

# Optional: S3 sends no events to EventBridge until this is on for the bucket.
resource "aws_s3_bucket_notification" "eventbridge" {
  count       = var.enable_bucket_eventbridge ? 1 : 0
  bucket      = var.bucket_name
  eventbridge = true
}

resource "aws_cloudwatch_event_rule" "object_created" {
  name        = "${var.name}-object-created"
  description = "New objects in ${var.bucket_name}, for Bucket Relay"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail        = local.detail
  })
  tags = var.tags
}

module "delivery" {
  source = "../delivery"

  name                             = var.name
  rule_name                        = aws_cloudwatch_event_rule.object_created.name
  rule_arn                         = aws_cloudwatch_event_rule.object_created.arn
  events_of                        = "Events for bucket ${var.bucket_name}"
  events_url                       = var.events_url
  event_source_secret              = var.event_source_secret
  invocation_rate_limit_per_second = var.invocation_rate_limit_per_second
  maximum_event_age_seconds        = var.maximum_event_age_seconds
  maximum_retry_attempts           = var.maximum_retry_attempts
  dlq_kms_key_arn                  = var.dlq_kms_key_arn
  alarm_actions                    = var.alarm_actions
  tags                             = var.tags
}

# --- optional: the read role for poll mode and backfill -------------------------------------
# The receiver's poller assumes it with the integration's external id (`integrations show` prints
# it) to list the bucket. Listing needs s3:ListBucket (ListObjectsV2) and s3:ListBucketVersions
# (ListObjectVersions, which gives the version ids events carry); GetObject is not needed, and
# is not enough.

data "aws_partition" "current" {}

locals {
  bucket_arn = "arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"
}

data "aws_iam_policy_document" "read_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [try(var.read_role.trusted_principal_arn, "")]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [try(var.read_role.external_id, "")]
    }
  }
}

resource "aws_iam_role" "read" {
  count                = var.read_role == null ? 0 : 1
  name                 = "${var.name}-read"
  description          = "Bucket Relay lists ${var.bucket_name} with this role (poll mode and backfill)"
  assume_role_policy   = data.aws_iam_policy_document.read_trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "read" {
  statement {
    sid       = "ListTheBucketUnderThePrefix"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [local.bucket_arn]

    dynamic "condition" {
      for_each = var.prefix == null ? [] : [var.prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${condition.value}*"]
      }
    }
  }
}

resource "aws_iam_role_policy" "read" {
  count  = var.read_role == null ? 0 : 1
  name   = "${var.name}-read"
  role   = aws_iam_role.read[0].id
  policy = data.aws_iam_policy_document.read.json
}

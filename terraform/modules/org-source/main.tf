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

module "delivery" {
  source = "../delivery"

  name                             = var.name
  rule_name                        = aws_cloudwatch_event_rule.to_receiver.name
  rule_arn                         = aws_cloudwatch_event_rule.to_receiver.arn
  event_bus_name                   = aws_cloudwatch_event_bus.central.name
  events_of                        = "Events of the organization's buckets"
  events_url                       = var.events_url
  event_source_secret              = var.event_source_secret
  invocation_rate_limit_per_second = var.invocation_rate_limit_per_second
  maximum_event_age_seconds        = var.maximum_event_age_seconds
  maximum_retry_attempts           = var.maximum_retry_attempts
  dlq_kms_key_arn                  = var.dlq_kms_key_arn
  alarm_actions                    = var.alarm_actions
  tags                             = var.tags
}

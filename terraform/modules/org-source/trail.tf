# Optional: an organization trail logging S3 object writes as data events, in every account and
# Region. S3 sends "Object Created" events to EventBridge only for buckets with EventBridge
# notifications turned on, one by one; the trail sees every bucket, new ones included. CloudTrail
# puts the events it logs on the default bus of the account and Region of the call, where the
# StackSet's rule forwards them. Data events are charged per event.

locals {
  trail_name = "${var.name}-s3-writes"
  trail_arn  = "arn:${data.aws_partition.current.partition}:cloudtrail:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:trail/${local.trail_name}"
  # Advanced event selectors narrow by ARN prefix only: usable when every pattern is a name or a
  # prefix followed by one final *; otherwise the trail logs every bucket and the rules filter.
  prefix_patterns = alltrue([for p in var.bucket_patterns : !strcontains(trimsuffix(p, "*"), "*")])
  arn_prefixes = [
    for p in var.bucket_patterns :
    "arn:${data.aws_partition.current.partition}:s3:::${endswith(p, "*") ? trimsuffix(p, "*") : "${p}/"}"
  ]
  trail_arn_prefixes = !local.every_bucket && local.prefix_patterns ? local.arn_prefixes : []
}

resource "aws_s3_bucket" "trail" {
  # checkov:skip=CKV_AWS_18: the trail's own log bucket; access logs of it would need yet another bucket
  # checkov:skip=CKV_AWS_144: cross-region replication is the organization's choice for its audit logs
  # checkov:skip=CKV2_AWS_62: nothing reacts to new log files; the events themselves go to EventBridge
  # checkov:skip=CKV2_AWS_61: retention of audit logs is the organization's policy, not this module's
  count  = var.organization_trail == null ? 0 : 1
  bucket = "${var.name}-trail-${data.aws_caller_identity.current.account_id}"
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "trail" {
  count                   = var.organization_trail == null ? 0 : 1
  bucket                  = aws_s3_bucket.trail[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "trail" {
  count  = var.organization_trail == null ? 0 : 1
  bucket = aws_s3_bucket.trail[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "trail" {
  count  = var.organization_trail == null ? 0 : 1
  bucket = aws_s3_bucket.trail[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "trail" {
  count  = var.organization_trail == null ? 0 : 1
  bucket = aws_s3_bucket.trail[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.organization_trail.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

# CloudTrail may read the bucket's ACL and write log files for this account and for the
# organization's accounts, for this trail only; nothing travels without TLS.
data "aws_iam_policy_document" "trail_bucket" {
  count = var.organization_trail == null ? 0 : 1

  statement {
    sid       = "CloudTrailChecksTheAcl"
    actions   = ["s3:GetBucketAcl"]
    resources = [aws_s3_bucket.trail[0].arn]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  statement {
    sid     = "CloudTrailWritesThisTrailsLogs"
    actions = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.trail[0].arn}/AWSLogs/${data.aws_caller_identity.current.account_id}/*",
      "${aws_s3_bucket.trail[0].arn}/AWSLogs/${var.organization_id}/*",
    ]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.trail[0].arn, "${aws_s3_bucket.trail[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "trail" {
  count  = var.organization_trail == null ? 0 : 1
  bucket = aws_s3_bucket.trail[0].id
  policy = data.aws_iam_policy_document.trail_bucket[0].json
}

resource "aws_cloudtrail" "organization" {
  # checkov:skip=CKV_AWS_252: no SNS notice per log file; the events go to EventBridge
  # checkov:skip=CKV2_AWS_10: the events go to EventBridge; CloudWatch Logs would be a second copy
  count                         = var.organization_trail == null ? 0 : 1
  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.trail[0].id
  is_organization_trail         = true
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = var.organization_trail.kms_key_arn

  advanced_event_selector {
    name = "S3 object writes in the monitored buckets"

    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::S3::Object"]
    }
    field_selector {
      field  = "readOnly"
      equals = ["false"]
    }
    field_selector {
      field  = "eventName"
      equals = local.written
    }
    dynamic "field_selector" {
      for_each = length(local.trail_arn_prefixes) > 0 ? [local.trail_arn_prefixes] : []
      content {
        field       = "resources.ARN"
        starts_with = field_selector.value
      }
    }
  }

  tags       = var.tags
  depends_on = [aws_s3_bucket_policy.trail]
}

# Every input set: the "logs-*" buckets of two organizational units in three Regions, seen through
# an organization trail (every bucket, no per-bucket EventBridge setting) encrypted with a
# customer-managed key, from a delegated administrator account, with the dead-letter queue's
# alarm to an SNS topic, and a read role in every member account so that an object seen both as
# an S3 event and as a CloudTrail event in an unversioned bucket is one job.

provider "aws" {
  region = "eu-west-1"
}

variable "bucket_relay_secret" {
  type      = string
  sensitive = true
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "trail_key" {
  # checkov:skip=CKV_AWS_109: a key policy's resource "*" is this key only
  # checkov:skip=CKV_AWS_111: a key policy's resource "*" is this key only
  # checkov:skip=CKV_AWS_356: a key policy's resource "*" is this key only
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudTrailEncryptsTheTrail"
    actions   = ["kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:cloudtrail:arn"
      values   = ["arn:aws:cloudtrail:*:${data.aws_caller_identity.current.account_id}:trail/*"]
    }
  }
}

resource "aws_kms_key" "trail" {
  description         = "Bucket Relay organization trail"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.trail_key.json
}

resource "aws_sns_topic" "alarms" {
  name              = "bucket-relay-org-alarms"
  kms_master_key_id = "alias/aws/sns"
}

module "bucket_relay_org" {
  source                           = "../../modules/org-source"
  name                             = "relay-org"
  organization_id                  = "o-a1b2c3d4e5"
  organizational_unit_ids          = ["ou-ab12-11112222", "ou-ab12-33334444"]
  monitored_regions                = ["eu-west-1", "eu-central-1", "us-east-1"]
  bucket_patterns                  = ["logs-*"]
  events_url                       = "https://abcdefghij.lambda-url.eu-west-1.on.aws/v1/integrations/int_0123456789abcdefghij/events"
  event_source_secret              = var.bucket_relay_secret
  organization_trail               = { kms_key_arn = aws_kms_key.trail.arn }
  call_as                          = "DELEGATED_ADMIN"
  invocation_rate_limit_per_second = 100
  maximum_event_age_seconds        = 86400
  maximum_retry_attempts           = 185
  alarm_actions                    = [aws_sns_topic.alarms.arn]
  read_role = {
    trusted_principal_arn = "arn:aws:iam::111122223333:role/bucket-relay-receiver"
    external_id           = "brx-0123456789abcdef0123456789abcdef"
    role_name             = "bucket-relay-read"
    region                = "eu-west-1"
  }

  tags = {
    service = "bucket-relay-org"
  }
}

output "dlq_url" {
  value = module.bucket_relay_org.dlq_url
}

output "trail_arn" {
  value = module.bucket_relay_org.trail_arn
}

output "read_role_name" {
  value = module.bucket_relay_org.read_role_name
}

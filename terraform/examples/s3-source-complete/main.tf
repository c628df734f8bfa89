# Every input set: filters, rate limit, retry policy, a customer-managed key for the DLQ, its
# alarm to an SNS topic, and EventBridge switched on for the bucket by this module.

provider "aws" {
  region = "eu-west-1"
}

variable "bucket_relay_secret" {
  type      = string
  sensitive = true
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "dlq_key" {
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
    sid       = "EventBridgeWritesTheDeadLetterQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "dlq" {
  description         = "Bucket Relay source dead-letter queue"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.dlq_key.json
}

# Where the dead-letter queue's alarm goes.
resource "aws_sns_topic" "alarms" {
  name              = "invoices-relay-alarms"
  kms_master_key_id = "alias/aws/sns"
}

module "bucket_relay_source" {
  source = "../../modules/s3-source"

  name                             = "invoices-relay"
  bucket_name                      = "customer-invoices"
  events_url                       = "https://abcdefghij.lambda-url.eu-west-1.on.aws/v1/integrations/int_0123456789abcdefghij/events"
  event_source_secret              = var.bucket_relay_secret
  prefix                           = "incoming/"
  suffixes                         = [".pdf", ".png"]
  invocation_rate_limit_per_second = 20
  maximum_event_age_seconds        = 86400
  maximum_retry_attempts           = 185
  dlq_kms_key_arn                  = aws_kms_key.dlq.arn
  enable_bucket_eventbridge        = true
  alarm_actions                    = [aws_sns_topic.alarms.arn]

  # Poll mode and backfill: the receiver's poller may list the bucket with this role.
  read_role = {
    trusted_principal_arn = "arn:aws:iam::111122223333:role/relay-prod-poller"
    external_id           = "brx-78fa38848e688947f410a44374dd3e96"
  }

  tags = {
    service = "bucket-relay-source"
  }
}

output "dlq_url" {
  value = module.bucket_relay_source.dlq_url
}

output "read_role_arn" {
  value = module.bucket_relay_source.read_role_arn
}

variable "bucket_name" {
  description = "The S3 bucket whose new objects become Bucket Relay jobs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "events_url" {
  description = "The integration's events URL, as `bucket-relay integrations create --provider s3` prints it: https://<receiver>/v1/integrations/<id>/events."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+(/.*)?/v1/integrations/int_[a-z0-9]+/events$", var.events_url))
    error_message = "events_url must be an https:// URL ending in /v1/integrations/<int_id>/events (API destinations take https only)."
  }
}

variable "event_source_secret" {
  description = "The integration's event source secret (whsec_…), sent as `Authorization: Bearer <secret>`. Pass it from a secret store or TF_VAR_…, never from version control."
  type        = string
  sensitive   = true

  validation {
    condition     = startswith(var.event_source_secret, "whsec_")
    error_message = "event_source_secret must be the whsec_… secret that `integrations create` printed."
  }
}

variable "prefix" {
  description = "Only keys under this prefix are sent (null: every key). The receiver filters too; this saves invocations. A prefix with characters URL encoding changes (a space, +, %, non-ASCII…) is left to the receiver, since S3 may write the key encoded in the event the rule matches."
  type        = string
  default     = null
}

variable "suffixes" {
  description = "Only keys ending in one of these are sent, e.g. [\".pdf\"] (empty: every suffix). Suffixes with characters URL encoding changes are left to the receiver, as for prefix."
  type        = list(string)
  default     = []
}

variable "name" {
  description = "Prefix of the rule, connection, API destination, role and dead-letter queue names."
  type        = string
  default     = "bucket-relay-source"

  validation {
    condition     = can(regex("^[a-zA-Z0-9-_]{1,48}$", var.name))
    error_message = "name must be 1 to 48 letters, digits, hyphens or underscores."
  }
}

variable "invocation_rate_limit_per_second" {
  description = "Most calls per second EventBridge makes to the receiver; bursts above it wait in EventBridge's retry."
  type        = number
  default     = 50

  validation {
    condition     = var.invocation_rate_limit_per_second >= 1 && var.invocation_rate_limit_per_second <= 300
    error_message = "invocation_rate_limit_per_second must be between 1 and 300."
  }
}

variable "maximum_event_age_seconds" {
  description = "How long EventBridge keeps retrying an event (the receiver answers 5xx while paused or on an outage)."
  type        = number
  default     = 86400

  validation {
    condition     = var.maximum_event_age_seconds >= 60 && var.maximum_event_age_seconds <= 86400
    error_message = "maximum_event_age_seconds must be between 60 and 86400."
  }
}

variable "maximum_retry_attempts" {
  description = "How many times EventBridge retries an event before dead-lettering it."
  type        = number
  default     = 185

  validation {
    condition     = var.maximum_retry_attempts >= 0 && var.maximum_retry_attempts <= 185
    error_message = "maximum_retry_attempts must be between 0 and 185."
  }
}

variable "dlq_kms_key_arn" {
  description = "KMS key for the dead-letter queue; null uses SQS-managed encryption (SSE-SQS)."
  type        = string
  default     = null
}

variable "enable_bucket_eventbridge" {
  description = "Turn on 'Send notifications to Amazon EventBridge' for the bucket here. Leave false if the bucket's notification configuration is managed elsewhere: aws_s3_bucket_notification replaces the whole configuration."
  type        = bool
  default     = false
}

variable "read_role" {
  description = "Create the role Bucket Relay lists the bucket with (poll mode and backfill): trusted_principal_arn is the receiver's poller role (its `poller_role_arn` output) or account root, external_id the integration's, as `integrations show` prints it. null: no role."
  type = object({
    trusted_principal_arn = string
    external_id           = string
  })
  default = null

  validation {
    condition     = var.read_role == null || can(regex("^brx-[0-9a-f]{32}$", var.read_role.external_id))
    error_message = "read_role.external_id must be the integration's external id (brx- and 32 hex digits), as `bucket-relay integrations show` prints it."
  }

  validation {
    condition     = var.read_role == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+)$", var.read_role.trusted_principal_arn))
    error_message = "read_role.trusted_principal_arn must be an account root or role ARN."
  }
}

variable "alarm_actions" {
  description = "ARNs notified when the dead-letter queue holds events, and again when it is empty (e.g. an SNS topic); empty: the alarm shows in CloudWatch only."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "name" {
  description = "Prefix of every resource name (the bus, rules, queue, StackSet, trail)."
  type        = string
  default     = "bucket-relay-org"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,40}$", var.name))
    error_message = "name must be 1 to 40 letters, digits or hyphens."
  }
}

variable "organization_id" {
  description = "The AWS Organization (o-…) whose accounts may put events on the central bus: the bus policy admits only its principals."
  type        = string

  validation {
    condition     = can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must be o- and 10 to 32 lowercase letters or digits."
  }
}

variable "organizational_unit_ids" {
  description = "Where the StackSet puts the forwarding rules: organizational unit ids (r-… for the whole organization). New accounts in them get the rules automatically."
  type        = list(string)

  validation {
    condition     = length(var.organizational_unit_ids) > 0 && alltrue([for id in var.organizational_unit_ids : can(regex("^(r-[a-z0-9]{4,32}|ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})$", id))])
    error_message = "organizational_unit_ids must name at least one root (r-…) or organizational unit (ou-…)."
  }
}

variable "monitored_regions" {
  description = "Regions whose buckets are watched: each member account gets the forwarding rules in each of them."
  type        = list(string)

  validation {
    condition     = length(var.monitored_regions) > 0
    error_message = "monitored_regions must name at least one region."
  }
}

variable "bucket_patterns" {
  description = "Bucket names whose events are forwarded; * matches any run of characters (the integration's --bucket and its scope). [\"*\"]: every bucket."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.bucket_patterns) > 0 && alltrue([for p in var.bucket_patterns : length(trimspace(p)) > 0])
    error_message = "bucket_patterns must hold at least one non-empty pattern."
  }
}

variable "events_url" {
  description = "The integration's events URL, https (bucket-relay integrations create --provider s3 --organization … prints it)."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+(/.*)?/v1/integrations/int_[a-z0-9]+/events$", var.events_url))
    error_message = "events_url must be an https:// URL ending in /v1/integrations/<int_id>/events (API destinations take https only)."
  }
}

variable "event_source_secret" {
  description = "The integration's whsec_… secret, sent as Authorization: Bearer. Pass it from an environment variable (TF_VAR_…), never from a file."
  type        = string
  sensitive   = true

  validation {
    condition     = startswith(var.event_source_secret, "whsec_")
    error_message = "event_source_secret must be the whsec_… secret bucket-relay printed."
  }
}

variable "organization_trail" {
  description = "Also create an organization trail logging S3 object writes (data events, charged per event) in the monitored buckets: it sees every bucket, new ones included, without each bucket's EventBridge setting. Its CloudTrail events reach the same bus."
  type = object({
    kms_key_arn = string
  })
  default = null
}

variable "invocation_rate_limit_per_second" {
  description = "The most calls per second the API destination makes to the receiver (EventBridge queues the rest)."
  type        = number
  default     = 50

  validation {
    condition     = var.invocation_rate_limit_per_second >= 1 && var.invocation_rate_limit_per_second <= 300
    error_message = "invocation_rate_limit_per_second must be between 1 and 300."
  }
}

variable "maximum_event_age_seconds" {
  description = "How long EventBridge retries an event before dead-lettering it (at most 24 h)."
  type        = number
  default     = 86400

  validation {
    condition     = var.maximum_event_age_seconds >= 60 && var.maximum_event_age_seconds <= 86400
    error_message = "maximum_event_age_seconds must be between 60 and 86400."
  }
}

variable "maximum_retry_attempts" {
  description = "How many times EventBridge retries an event (at most 185)."
  type        = number
  default     = 185

  validation {
    condition     = var.maximum_retry_attempts >= 0 && var.maximum_retry_attempts <= 185
    error_message = "maximum_retry_attempts must be between 0 and 185."
  }
}

variable "dlq_kms_key_arn" {
  description = "Customer-managed KMS key for the dead-letter queue (its policy must let events.amazonaws.com use it); null: SQS-managed encryption."
  type        = string
  default     = null
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

variable "call_as" {
  description = "SELF when applied in the management account, DELEGATED_ADMIN in a delegated administrator account for StackSets."
  type        = string
  default     = "SELF"

  validation {
    condition     = contains(["SELF", "DELEGATED_ADMIN"], var.call_as)
    error_message = "call_as must be SELF or DELEGATED_ADMIN."
  }
}

variable "read_role" {
  description = "Also create, in every member account, the role the receiver looks objects up with (HeadObject), so that an object arriving both as an S3 event and as a CloudTrail event in an unversioned bucket is one job. trusted_principal_arn: the receiver stack's `receiver_role_arn` output; external_id: the integration's, as `bucket-relay integrations show` prints it; region: the one Region per account the role's stack goes to (IAM is global; default: the first monitored Region). Then: bucket-relay integrations set-source ID --role-name <role_name>. null: no role."
  type = object({
    trusted_principal_arn = string
    external_id           = string
    role_name             = optional(string, "bucket-relay-read")
    region                = optional(string)
  })
  default = null

  validation {
    condition     = var.read_role == null || can(regex("^brx-[0-9a-f]{32}$", var.read_role.external_id))
    error_message = "read_role.external_id must be the integration's external id (brx- and 32 hex digits), as `bucket-relay integrations show` prints it."
  }

  validation {
    condition     = var.read_role == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+)$", var.read_role.trusted_principal_arn))
    error_message = "read_role.trusted_principal_arn must be an account root or role ARN (the receiver's receiver_role_arn output)."
  }

  validation {
    condition     = var.read_role == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.read_role.role_name))
    error_message = "read_role.role_name must be an IAM role name: 1 to 64 letters, digits and +=,.@_-."
  }
}

variable "name" {
  description = "Prefix of every resource name (the Lambda, tables, queues, secret, alarms)."
  type        = string
  default     = "bucket-relay"

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{1,40}$", var.name))
    error_message = "name must be 1 to 40 letters, digits or hyphens."
  }
}

variable "lambda_zip_path" {
  description = "Path to the deployable zip that scripts/package-lambda builds (target/lambda/bucket-relay/bootstrap.zip)."
  type        = string

  validation {
    condition     = endswith(var.lambda_zip_path, ".zip")
    error_message = "lambda_zip_path must point at the bootstrap .zip built by scripts/package-lambda."
  }
}

variable "architecture" {
  description = "Lambda architecture: x86_64 (the default build) or arm64 (scripts/package-lambda --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Lambda memory in MB. The receiver is CPU-light; more memory also buys more CPU."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Lambda timeout in seconds: above the SDK's 10 s operation timeout, and at most 180 s, the receiver's longest request (MAX_REQUEST_TIME), which its 4-minute claim lease and SQS's 5-minute FIFO deduplication window are built around."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout >= 15 && var.timeout <= 180
    error_message = "timeout must be between 15 and 180 seconds."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions, which also cap the receiver's load on DynamoDB and SQS; null (the default) reserves none. AWS keeps 100 of the account's concurrency unreserved, so a reservation fails to apply in accounts with a small quota."
  type        = number
  default     = null

  validation {
    condition     = coalesce(var.reserved_concurrency, 1) >= 1
    error_message = "reserved_concurrency must be null (no reservation) or at least 1."
  }
}

variable "log_level" {
  description = "RELAY_LOG filter for the receiver's JSON logs (info, debug, bucket_relay=debug,warn…)."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the receiver's logs (a year by default: the audit trail of every refused event)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, …)."
  }
}

variable "fifo_queue" {
  description = "Make the ingest queue FIFO: jobs then carry MessageGroupId = integration id and MessageDeduplicationId = job id."
  type        = bool
  default     = false
}

variable "queue_visibility_timeout_seconds" {
  description = "Visibility timeout of the ingest queue: how long the pipeline has to process a job before it is delivered again."
  type        = number
  default     = 300

  validation {
    condition     = var.queue_visibility_timeout_seconds >= 0 && var.queue_visibility_timeout_seconds <= 43200
    error_message = "queue_visibility_timeout_seconds must be between 0 and 43200."
  }
}

variable "max_receive_count" {
  description = "Deliveries of a job to the pipeline before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "deletion_protection" {
  description = "Protect the DynamoDB tables from deletion (turn off only to tear a test stack down)."
  type        = bool
  default     = true
}

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic; null for none (subscribe something else to the topic output)."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address or null."
  }
}

variable "rejected_reason_alarms" {
  description = "Reasons whose count raises an alarm when above zero in 5 minutes (metrics reason_<reason> in the BucketRelay namespace)."
  type        = list(string)
  default = [
    "invalid_secret",
    "malformed_event",
    "provider_mismatch",
    "account_mismatch",
    "bucket_mismatch",
    "mode_mismatch",
  ]
}

variable "poll_enabled" {
  description = "Run the poller (poll mode's ticks, and event-mode integrations' safety nets) as a second function on a schedule. Without it, poll-mode integrations get no jobs and safety nets never list; backfills and reconciles still run from the CLI."
  type        = bool
  default     = true
}

variable "poll_every_minutes" {
  description = "Minutes between poll ticks (EventBridge Scheduler rate). Each tick lists every poll-mode bucket's whole prefix: one LIST request per 1,000 objects."
  type        = number
  default     = 2

  validation {
    condition     = var.poll_every_minutes >= 1 && var.poll_every_minutes <= 10
    error_message = "poll_every_minutes must be between 1 and 10 (the poller's not-running alarm looks at 15 minutes)."
  }
}

variable "poll_timeout" {
  description = "The poller's Lambda timeout in seconds. Shorter than the interval between ticks, so two ticks never run at once; a tick cut off advances no watermark and loses nothing."
  type        = number
  default     = 100

  validation {
    condition     = var.poll_timeout >= 30 && var.poll_timeout < var.poll_every_minutes * 60
    error_message = "poll_timeout must be at least 30 seconds and shorter than poll_every_minutes."
  }
}

variable "poll_read_role_arns" {
  description = "The customer read roles the poller may assume (always only with one of our external ids, which start with brx-). Narrow it to the customers' role ARNs or account ids when you know them."
  type        = list(string)
  default     = ["arn:aws:iam::*:role/*"]

  validation {
    condition     = length(var.poll_read_role_arns) > 0 && alltrue([for arn in var.poll_read_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9*]+:role/", arn))])
    error_message = "poll_read_role_arns must be IAM role ARNs (account id or *, role path or *)."
  }
}

variable "lookup_read_role_arns" {
  description = "The customer read roles the receiver may assume to look an object up when a CloudTrail event names no version of it (always only with one of our external ids, which start with brx-). Narrow it to the customers' role ARNs or account ids when you know them."
  type        = list(string)
  default     = ["arn:aws:iam::*:role/*"]

  validation {
    condition     = length(var.lookup_read_role_arns) > 0 && alltrue([for arn in var.lookup_read_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9*]+:role/", arn))])
    error_message = "lookup_read_role_arns must be IAM role ARNs (account id or *, role path or *)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "queue_depth_alarm_messages" {
  description = "Jobs waiting on the ingest queue for 10 minutes above which the backlog alarm fires (the runbook's 1000)."
  type        = number
  default     = 1000

  validation {
    condition     = var.queue_depth_alarm_messages >= 1
    error_message = "queue_depth_alarm_messages must be at least 1."
  }
}

variable "queue_age_alarm_seconds" {
  description = "Age of the ingest queue's oldest job, in seconds, above which the stalled-pipeline alarm fires."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_alarm_seconds >= 60 && var.queue_age_alarm_seconds <= 1209600
    error_message = "queue_age_alarm_seconds must be 60 to 1209600 (the queue's longest retention)."
  }
}

variable "master_key_in_kms" {
  description = "Hold the master key in AWS KMS: an HMAC_256 key derives every secret and external id (GenerateMac) and a symmetric key seals R2 tokens (Encrypt/Decrypt), so no key material is in Secrets Manager or the functions' memory. A new stack starts its keyring on them; an existing one moves with `bucket-relay keys rotate` (its cli_environment names the keys) and `keys reseal`."
  type        = bool
  default     = false
}

variable "key_administrator_arns" {
  description = "With master_key_in_kms: the IAM roles that administer the two keys and may Encrypt (the operator's CLI seals tokens in `set-source` and `keys reseal`). Include the role Terraform runs as: KMS refuses a key policy that would lock its creator out."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.key_administrator_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$", arn))])
    error_message = "key_administrator_arns must be IAM role ARNs (arn:aws:iam::<account>:role/<name>)."
  }
}

variable "job_schema" {
  description = "The schema jobs are written in: v2 (with each object's route: route, params, output_prefix) or v1 while the pipeline upgrades (docs/contract.md, docs/schemas/)."
  type        = string
  default     = "v2"

  validation {
    condition     = contains(["v1", "v2"], var.job_schema)
    error_message = "job_schema must be v1 or v2."
  }
}

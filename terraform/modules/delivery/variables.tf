# The calling modules check these values (validations on their own variables); this module
# takes them as given.

variable "name" {
  description = "Prefix of every resource name: <name>-receiver (connection, API destination), <name>-dlq, <name>-invoke."
  type        = string
}

variable "rule_name" {
  description = "The EventBridge rule whose events go to the receiver."
  type        = string
}

variable "rule_arn" {
  description = "That rule's ARN: the only source allowed to write to the dead-letter queue."
  type        = string
}

variable "event_bus_name" {
  description = "The rule's event bus; null: the default bus."
  type        = string
  default     = null
}

variable "events_of" {
  description = "What the events are, for the alarm's description (\"Events for bucket docs\")."
  type        = string
}

variable "events_url" {
  description = "The integration's events URL (https)."
  type        = string
}

variable "event_source_secret" {
  description = "The integration's whsec_… secret, sent as Authorization: Bearer."
  type        = string
  sensitive   = true
}

variable "invocation_rate_limit_per_second" {
  description = "The most calls per second the API destination makes to the receiver."
  type        = number
}

variable "maximum_event_age_seconds" {
  description = "How long EventBridge retries an event before dead-lettering it."
  type        = number
}

variable "maximum_retry_attempts" {
  description = "How many times EventBridge retries an event."
  type        = number
}

variable "dlq_kms_key_arn" {
  description = "Customer-managed KMS key for the dead-letter queue; null: SQS-managed encryption."
  type        = string
  default     = null
}

variable "alarm_actions" {
  description = "ARNs notified when the dead-letter queue holds events, and again when it is empty."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}

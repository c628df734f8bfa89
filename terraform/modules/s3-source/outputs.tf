output "rule_arn" {
  description = "ARN of the EventBridge rule matching the bucket's Object Created events."
  value       = aws_cloudwatch_event_rule.object_created.arn
}

output "api_destination_arn" {
  description = "ARN of the API destination that calls the receiver."
  value       = module.delivery.api_destination_arn
}

output "connection_arn" {
  description = "ARN of the EventBridge connection holding the bearer secret (in a Secrets Manager secret EventBridge manages)."
  value       = module.delivery.connection_arn
}

output "dlq_url" {
  description = "Dead-letter queue of events EventBridge could not deliver: inspect and replay from here."
  value       = module.delivery.dlq_url
}

output "dlq_alarm_arn" {
  description = "ARN of the alarm raised while the dead-letter queue holds events."
  value       = module.delivery.dlq_alarm_arn
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = module.delivery.dlq_arn
}

output "role_arn" {
  description = "ARN of the role EventBridge assumes to invoke the API destination."
  value       = module.delivery.invoke_role_arn
}

output "read_role_arn" {
  description = "ARN of the read role (null without read_role): give it to `bucket-relay integrations set-source ID --role-arn`."
  value       = var.read_role == null ? null : aws_iam_role.read[0].arn
}

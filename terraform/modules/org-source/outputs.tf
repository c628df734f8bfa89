output "central_bus_arn" {
  description = "ARN of the central event bus the member accounts' rules send to."
  value       = aws_cloudwatch_event_bus.central.arn
}

output "rule_arn" {
  description = "ARN of the central bus's rule that calls the receiver."
  value       = aws_cloudwatch_event_rule.to_receiver.arn
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
  description = "Dead-letter queue of events EventBridge could not deliver: replay with bucket-relay replay eventbridge --dlq-url."
  value       = module.delivery.dlq_url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = module.delivery.dlq_arn
}

output "dlq_alarm_arn" {
  description = "ARN of the alarm raised while the dead-letter queue holds events."
  value       = module.delivery.dlq_alarm_arn
}

output "stack_set_name" {
  description = "The StackSet that puts the forwarding rule in every member account and monitored Region."
  value       = aws_cloudformation_stack_set.members.name
}

output "trail_arn" {
  description = "ARN of the organization trail logging S3 object writes; null without organization_trail."
  value       = try(aws_cloudtrail.organization[0].arn, null)
}

output "trail_bucket" {
  description = "The trail's log bucket; null without organization_trail."
  value       = try(aws_s3_bucket.trail[0].id, null)
}

output "read_role_name" {
  description = "The read role's name in every member account (give it to bucket-relay integrations set-source ID --role-name); null without read_role."
  value       = try(var.read_role.role_name, null)
}

output "connection_arn" {
  description = "ARN of the EventBridge connection holding the bearer secret."
  value       = aws_cloudwatch_event_connection.receiver.arn
}

output "api_destination_arn" {
  description = "ARN of the API destination that calls the receiver."
  value       = aws_cloudwatch_event_api_destination.receiver.arn
}

output "invoke_role_arn" {
  description = "ARN of the role EventBridge assumes to invoke the API destination."
  value       = aws_iam_role.invoke.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_alarm_arn" {
  description = "ARN of the alarm raised while the dead-letter queue holds events."
  value       = aws_cloudwatch_metric_alarm.dlq_depth.arn
}

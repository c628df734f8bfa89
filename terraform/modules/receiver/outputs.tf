output "function_url" {
  description = "The receiver's public base URL: give it to `integrations create --receiver-url` (RELAY_PUBLIC_URL)."
  value       = aws_lambda_function_url.receiver.function_url
}

output "function_name" {
  description = "Name of the receiver Lambda."
  value       = aws_lambda_function.receiver.function_name
}

output "queue_url" {
  description = "URL of the ingest queue the pipeline consumes."
  value       = aws_sqs_queue.ingest.url
}

output "queue_arn" {
  description = "ARN of the ingest queue (grant the pipeline sqs:ReceiveMessage / DeleteMessage on it)."
  value       = aws_sqs_queue.ingest.arn
}

output "dlq_url" {
  description = "URL of the ingest queue's dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "integrations_table_name" {
  description = "DynamoDB table of integrations."
  value       = aws_dynamodb_table.integrations.name
}

output "ledger_table_name" {
  description = "DynamoDB table of the processed-objects ledger and usage counts."
  value       = aws_dynamodb_table.ledger.name
}

output "log_group_name" {
  description = "CloudWatch log group of the receiver's JSON logs."
  value       = aws_cloudwatch_log_group.receiver.name
}

output "master_key_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the master key."
  value       = aws_secretsmanager_secret.master_key.arn
}

output "kms_key_arn" {
  description = "ARN of the stack's KMS key."
  value       = aws_kms_key.this.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "cli_environment" {
  description = "Environment for running `bucket-relay integrations …` against this stack from an operator's machine."
  value = {
    RELAY_BACKEND              = "aws"
    RELAY_INTEGRATIONS_TABLE   = aws_dynamodb_table.integrations.name
    RELAY_LEDGER_TABLE         = aws_dynamodb_table.ledger.name
    RELAY_QUEUE_URL            = aws_sqs_queue.ingest.url
    RELAY_MASTER_KEY_SECRET_ID = aws_secretsmanager_secret.master_key.arn
    RELAY_PUBLIC_URL           = trimsuffix(aws_lambda_function_url.receiver.function_url, "/")
  }
}

output "master_key_kms_environment" {
  description = "With master_key_in_kms: RELAY_MASTER_KEY_KMS_ID and RELAY_SEALING_KEY_KMS_ID, the two KMS keys, for `bucket-relay keys rotate` to add a KMS-held version to an existing keyring (add them to cli_environment). Empty otherwise."
  value       = local.kms_cli_environment
}

output "receiver_role_arn" {
  description = "ARN of the receiver function's role: the principal org-source's `read_role.trusted_principal_arn` trusts, for object lookups."
  value       = aws_iam_role.receiver.arn
}

output "poller_function_name" {
  description = "Name of the poller function (null when poll_enabled is false); its logs are in /aws/lambda/<name>."
  value       = var.poll_enabled ? aws_lambda_function.poller[0].function_name : null
}

output "poller_role_arn" {
  description = "ARN of the role the poller lists buckets with: the principal a customer's read role trusts (s3-source `read_role.trusted_principal_arn`)."
  value       = var.poll_enabled ? aws_iam_role.poller[0].arn : null
}

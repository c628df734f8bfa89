# The receiver with every input set: an arm64 build (scripts/package-lambda --arm64), a FIFO
# ingest queue, alarm mail, and tags.

provider "aws" {
  region = "eu-west-1"
}

module "receiver" {
  source = "../../modules/receiver"

  name                             = "relay-prod"
  lambda_zip_path                  = "${path.root}/../../../target/lambda/bucket-relay/bootstrap.zip"
  architecture                     = "arm64"
  memory_size                      = 512
  timeout                          = 30
  reserved_concurrency             = 100
  log_level                        = "info"
  log_retention_days               = 365
  fifo_queue                       = true
  queue_visibility_timeout_seconds = 900
  max_receive_count                = 5
  deletion_protection              = true
  alarm_email                      = "oncall@example.com"
  rejected_reason_alarms           = ["invalid_secret", "malformed_event", "bucket_mismatch", "account_mismatch"]
  poll_enabled                     = true
  poll_every_minutes               = 2
  poll_timeout                     = 100
  poll_read_role_arns              = ["arn:aws:iam::444455556666:role/*", "arn:aws:iam::777788889999:role/*"]

  tags = {
    service = "bucket-relay"
    env     = "prod"
  }
}

output "function_url" {
  value = module.receiver.function_url
}

output "queue_url" {
  value = module.receiver.queue_url
}

output "dlq_url" {
  value = module.receiver.dlq_url
}

output "poller_role_arn" {
  value = module.receiver.poller_role_arn
}

output "cli_environment" {
  value = module.receiver.cli_environment
}

# A customer's S3 bucket sending its new objects to Bucket Relay: the two values come from
# `bucket-relay integrations create --provider s3`. Keep the secret out of version control:
#   export TF_VAR_bucket_relay_secret=whsec_…

provider "aws" {
  region = "eu-west-1"
}

variable "bucket_relay_secret" {
  type      = string
  sensitive = true
}

module "bucket_relay_source" {
  source              = "../../modules/s3-source"
  bucket_name         = "customer-uploads"
  events_url          = "https://abcdefghij.lambda-url.eu-west-1.on.aws/v1/integrations/int_0123456789abcdefghij/events"
  event_source_secret = var.bucket_relay_secret
}

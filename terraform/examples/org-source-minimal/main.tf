# Every bucket of an AWS Organization sending its new objects to one Bucket Relay integration,
# applied in the management account: the events URL comes from
# `bucket-relay integrations create --provider s3 --bucket '*' --organization o-…`. Keep the
# secret out of version control:
#   export TF_VAR_bucket_relay_secret=whsec_…

provider "aws" {
  region = "eu-west-1"
}

variable "bucket_relay_secret" {
  type      = string
  sensitive = true
}

module "bucket_relay_org" {
  source                  = "../../modules/org-source"
  organization_id         = "o-a1b2c3d4e5"
  organizational_unit_ids = ["r-ab12"]
  monitored_regions       = ["eu-west-1"]
  events_url              = "https://abcdefghij.lambda-url.eu-west-1.on.aws/v1/integrations/int_0123456789abcdefghij/events"
  event_source_secret     = var.bucket_relay_secret
}

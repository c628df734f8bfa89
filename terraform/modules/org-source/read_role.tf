# Optional: a read role in every member account, so the receiver can look an object up
# (HeadObject) when a CloudTrail event names no version of it. In an unversioned bucket a
# CloudTrail PutObject event carries neither ETag nor version id; the receiver assumes this role
# in the event's account with the integration's external id, asks the bucket for the object's
# ETag, and so gives the event the job id of the same object's "Object Created" event: one job,
# however many ways the object arrives. Without the role such an event's job id is its own id.
#
# IAM roles are global to an account, and a role with a fixed name can exist once: this StackSet
# deploys in exactly one Region per account (`read_role.region`), not in every monitored Region
# as the forwarding rules do.

locals {
  # The role's settings, or empty ones when there is no role (nothing is then deployed).
  reader = {
    role_name             = try(var.read_role.role_name, "")
    trusted_principal_arn = try(var.read_role.trusted_principal_arn, "")
    external_id           = try(var.read_role.external_id, "")
    region                = try(coalesce(var.read_role.region, var.monitored_regions[0]), "")
  }

  read_role_template = {
    AWSTemplateFormatVersion = "2010-09-09"
    Description              = "Bucket Relay: lets the receiver look up new objects (HeadObject) in this account's watched buckets"
    Resources = {
      ReadRole = {
        Type = "AWS::IAM::Role"
        Properties = {
          RoleName    = local.reader.role_name
          Description = "Bucket Relay receiver: HeadObject on the watched buckets, with the integration's external id"
          AssumeRolePolicyDocument = {
            Version = "2012-10-17"
            Statement = [{
              Effect    = "Allow"
              Principal = { AWS = local.reader.trusted_principal_arn }
              Action    = "sts:AssumeRole"
              Condition = { StringEquals = { "sts:ExternalId" = local.reader.external_id } }
            }]
          }
          Policies = [{
            PolicyName = "LookUpObjects"
            PolicyDocument = {
              Version = "2012-10-17"
              Statement = [
                {
                  # HeadObject is authorised as s3:GetObject.
                  Sid      = "HeadObject"
                  Effect   = "Allow"
                  Action   = "s3:GetObject"
                  Resource = [for p in var.bucket_patterns : { "Fn::Sub" = "arn:$${AWS::Partition}:s3:::${p}/*" }]
                },
                {
                  # With it a missing object answers 404 (skipped as object_gone) instead of 403
                  # (indistinguishable from a refusal).
                  Sid      = "TellMissingFromDenied"
                  Effect   = "Allow"
                  Action   = "s3:ListBucket"
                  Resource = [for p in var.bucket_patterns : { "Fn::Sub" = "arn:$${AWS::Partition}:s3:::${p}" }]
                },
              ]
            }
          }]
        }
      }
    }
    Outputs = {
      ReadRoleArn = { Value = { "Fn::GetAtt" = ["ReadRole", "Arn"] } }
    }
  }
}

resource "aws_cloudformation_stack_set" "readers" {
  count            = var.read_role == null ? 0 : 1
  name             = "${var.name}-readers"
  description      = "Bucket Relay: each member account's read role for object lookups (one Region per account)"
  permission_model = "SERVICE_MANAGED"
  call_as          = var.call_as
  # A role with a name of its own needs the named-IAM capability.
  capabilities  = ["CAPABILITY_NAMED_IAM"]
  template_body = jsonencode(local.read_role_template)

  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }

  operation_preferences {
    failure_tolerance_percentage = 10
    max_concurrent_percentage    = 25
  }

  managed_execution {
    active = true
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [administration_role_arn]
  }
}

resource "aws_cloudformation_stack_instances" "readers" {
  count          = var.read_role == null ? 0 : 1
  stack_set_name = aws_cloudformation_stack_set.readers[0].name
  call_as        = var.call_as
  regions        = [local.reader.region]

  deployment_targets {
    organizational_unit_ids = var.organizational_unit_ids
  }
}

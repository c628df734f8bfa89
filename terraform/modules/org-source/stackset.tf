# The member accounts' side, deployed by a service-managed StackSet into every account of
# `organizational_unit_ids` (and every account added to them later: auto-deployment), in each of
# `monitored_regions`: a rule on the account's default bus forwarding S3's object-written events
# to the central bus, with a role of the account that may put events there (a rule targeting
# another account's bus through an organization grant must send with a role). The role has no
# name of its own, so the same template deploys in several Regions of one account.
#
# A service-managed StackSet does not deploy to the management account itself: buckets there are
# not watched.

locals {
  member_template = {
    AWSTemplateFormatVersion = "2010-09-09"
    Description              = "Bucket Relay: forwards this account's new S3 objects to the organization's central event bus"
    Resources = {
      ForwardRole = {
        Type = "AWS::IAM::Role"
        Properties = {
          Description = "EventBridge forwards S3 object events to the Bucket Relay central bus"
          AssumeRolePolicyDocument = {
            Version = "2012-10-17"
            Statement = [{
              Effect    = "Allow"
              Principal = { Service = "events.amazonaws.com" }
              Action    = "sts:AssumeRole"
              Condition = { StringEquals = { "aws:SourceAccount" = { Ref = "AWS::AccountId" } } }
            }]
          }
          Policies = [{
            PolicyName = "PutToTheCentralBus"
            PolicyDocument = {
              Version = "2012-10-17"
              Statement = [{
                Effect   = "Allow"
                Action   = "events:PutEvents"
                Resource = aws_cloudwatch_event_bus.central.arn
              }]
            }
          }]
        }
      }
      ObjectWritten = {
        Type = "AWS::Events::Rule"
        Properties = {
          Description  = "New S3 objects, to the Bucket Relay central bus"
          EventPattern = local.object_written
          State        = "ENABLED"
          Targets = [{
            Id      = "bucket-relay-central-bus"
            Arn     = aws_cloudwatch_event_bus.central.arn
            RoleArn = { "Fn::GetAtt" = ["ForwardRole", "Arn"] }
          }]
        }
      }
    }
  }
}

resource "aws_cloudformation_stack_set" "members" {
  name             = "${var.name}-members"
  description      = "Bucket Relay: each member account's S3 object events to the central bus ${aws_cloudwatch_event_bus.central.name}"
  permission_model = "SERVICE_MANAGED"
  call_as          = var.call_as
  capabilities     = ["CAPABILITY_IAM"]
  template_body    = jsonencode(local.member_template)

  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }

  operation_preferences {
    failure_tolerance_percentage = 10
    max_concurrent_percentage    = 25
    region_concurrency_type      = "PARALLEL"
  }

  managed_execution {
    active = true
  }

  tags = var.tags

  lifecycle {
    # A service-managed StackSet reports AWS's own administration role.
    ignore_changes = [administration_role_arn]
  }
}

resource "aws_cloudformation_stack_instances" "members" {
  stack_set_name = aws_cloudformation_stack_set.members.name
  call_as        = var.call_as
  regions        = var.monitored_regions

  deployment_targets {
    organizational_unit_ids = var.organizational_unit_ids
  }
}

# --- the master key held in KMS (master_key_in_kms) ------------------------------------------
#
# Two keys whose material never leaves KMS. The MAC key (HMAC_256) derives every integration's
# secret and external id by GenerateMac; the functions keep each result for their life, so a warm
# function calls it once per integration and secret generation. The seal key (symmetric) seals
# R2 tokens, with the integration id as encryption context.
#
# Least privilege, in the key policies themselves: the functions may only GenerateMac (with
# HMAC_SHA_256) and Decrypt (with an integration_id context); only the key administrators (the
# operator's roles) may Encrypt and administer. There is no account-root statement, so IAM
# policies elsewhere cannot widen this.

locals {
  # The principals that derive and open: the receiver, and the poller when there is one.
  key_users = concat(
    [aws_iam_role.receiver.arn],
    var.poll_enabled ? [aws_iam_role.poller[0].arn] : [],
  )
  # What key administrators do (AWS's "key administrators" statement), without using the key.
  key_admin_actions = [
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
  ]
  # The only encryption context a seal carries.
  seal_context = {
    test     = "ForAllValues:StringEquals"
    variable = "kms:EncryptionContextKeys"
    values   = ["integration_id"]
  }
}

data "aws_iam_policy_document" "master_mac_key" {
  count = var.master_key_in_kms ? 1 : 0
  # checkov:skip=CKV_AWS_109: a key policy's resource "*" is this key only; administration is limited to key_administrator_arns
  # checkov:skip=CKV_AWS_111: a key policy's resource "*" is this key only; the functions may only GenerateMac with HMAC_SHA_256
  # checkov:skip=CKV_AWS_356: a key policy's resource "*" is this key only (key policies cannot name other resources)

  statement {
    sid       = "OperatorsAdminister"
    actions   = local.key_admin_actions
    resources = ["*"] # a key policy's resource is always the key itself
    principals {
      type        = "AWS"
      identifiers = var.key_administrator_arns
    }
  }

  statement {
    sid       = "OperatorsAndFunctionsDerive"
    actions   = ["kms:GenerateMac"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = concat(var.key_administrator_arns, local.key_users)
    }
    condition {
      test     = "StringEquals"
      variable = "kms:MacAlgorithm"
      values   = ["HMAC_SHA_256"]
    }
  }
}

resource "aws_kms_key" "master_mac" {
  count = var.master_key_in_kms ? 1 : 0
  # checkov:skip=CKV_AWS_7: KMS rotates only symmetric encryption keys; an HMAC key is rotated by adding a new one as a new master key version (`keys rotate --kms-mac-key`)
  description              = "${var.name}: master key (HMAC): derives every event source secret and external id"
  key_usage                = "GENERATE_VERIFY_MAC"
  customer_master_key_spec = "HMAC_256"
  deletion_window_in_days  = 30
  policy                   = data.aws_iam_policy_document.master_mac_key[0].json
  tags                     = var.tags
}

data "aws_iam_policy_document" "master_seal_key" {
  count = var.master_key_in_kms ? 1 : 0
  # checkov:skip=CKV_AWS_109: a key policy's resource "*" is this key only; administration is limited to key_administrator_arns
  # checkov:skip=CKV_AWS_111: a key policy's resource "*" is this key only; the functions may only Decrypt, with an integration_id context
  # checkov:skip=CKV_AWS_356: a key policy's resource "*" is this key only (key policies cannot name other resources)

  statement {
    sid       = "OperatorsAdminister"
    actions   = local.key_admin_actions
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = var.key_administrator_arns
    }
  }

  statement {
    sid       = "OperatorsSealAndOpen"
    actions   = ["kms:Encrypt", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = var.key_administrator_arns
    }
    condition {
      test     = local.seal_context.test
      variable = local.seal_context.variable
      values   = local.seal_context.values
    }
  }

  statement {
    sid       = "FunctionsOpen"
    actions   = ["kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = local.key_users
    }
    condition {
      test     = local.seal_context.test
      variable = local.seal_context.variable
      values   = local.seal_context.values
    }
  }
}

resource "aws_kms_key" "master_seal" {
  count                   = var.master_key_in_kms ? 1 : 0
  description             = "${var.name}: master key (sealing): seals R2 tokens at rest"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.master_seal_key[0].json
  tags                    = var.tags
}

locals {
  # A new stack's keyring: version 1 held in KMS, no key material at all.
  kms_keyring = var.master_key_in_kms ? jsonencode({
    current = 1
    keys = {
      "1" = {
        kms_mac_key  = aws_kms_key.master_mac[0].arn
        kms_seal_key = aws_kms_key.master_seal[0].arn
      }
    }
  }) : null
  # What `keys rotate` reads to add a KMS-held version to an existing keyring.
  kms_cli_environment = var.master_key_in_kms ? {
    RELAY_MASTER_KEY_KMS_ID  = aws_kms_key.master_mac[0].arn
    RELAY_SEALING_KEY_KMS_ID = aws_kms_key.master_seal[0].arn
  } : {}
}

terraform {
  # 1.11: write-only attributes, which keep the master key out of the state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.29: aws_lambda_permission.invoked_via_function_url, which a public function URL needs.
      version = ">= 6.29"
    }
    random = {
      source = "hashicorp/random"
      # 3.7: the ephemeral random_password that makes the master key.
      version = ">= 3.7"
    }
  }
}

# The receiver with every default: build the zip first with scripts/package-lambda.

provider "aws" {
  region = "eu-west-1"
}

module "receiver" {
  source          = "../../modules/receiver"
  lambda_zip_path = "${path.root}/../../../target/lambda/bucket-relay/bootstrap.zip"
}

output "function_url" {
  value = module.receiver.function_url
}

output "cli_environment" {
  value = module.receiver.cli_environment
}

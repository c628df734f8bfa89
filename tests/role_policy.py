"""What a role's Terraform policy document allows, read from the HCL, so an end-to-end test can
hold every call the receiver made against it: moto does not enforce IAM, AWS does.

`grants(document)` is the receiver module's named `aws_iam_policy_document`; `stack_resources`
names, for each resource of the test stack (support.AwsStack), the Terraform reference its role
statements use.
"""

import hcl2
from hcl2 import SerializationOptions

from relay_contract import ROOT

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def grants(document, module="receiver"):
    """(actions, resources) of each statement of `document` in `module`."""
    found = []
    for path in sorted((ROOT / "terraform" / "modules" / module).glob("*.tf")):
        parsed = hcl2.loads(path.read_text(), serialization_options=OPTIONS)
        for block in parsed.get("data", []):
            body = block.get("aws_iam_policy_document", {}).get(document)
            if body is None:
                continue
            for statement in body["statement"]:
                resources = statement["resources"]
                found.append((set(statement["actions"]),
                              {resources} if isinstance(resources, str) else set(resources)))
    assert found, f"no policy document {document} in terraform/modules/{module}"
    return found


def stack_resources(stack):
    """The test stack's resource names, each with the reference the Terraform statements use."""
    return {
        stack.integrations_table: "${aws_dynamodb_table.integrations.arn}",
        stack.ledger_table: "${aws_dynamodb_table.ledger.arn}",
        stack.queue_url: "${aws_sqs_queue.ingest.arn}",
        stack.secret_id: "${aws_secretsmanager_secret.master_key.arn}",
    }


def denied(made, document, stack):
    """The calls in `made` ((IAM action, resource name), from aws_proxy) that `document` does not
    allow: AWS would answer each with AccessDeniedException."""
    statements = grants(document)
    resources = stack_resources(stack)
    return sorted((action, name) for action, name in made
                  if not any(action in actions and resources.get(name) in allowed
                             for actions, allowed in statements))

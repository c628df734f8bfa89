"""Structural tests of terraform/: what `terraform validate` cannot run without downloading
providers, checked on the HCL.

The tests parse the modules with python-hcl2 and hold them to the receiver's own definitions, read
from its machine-readable contract (`cargo run -p bucket-relay --example contract`, see
tests/relay_contract.py): the environment variable names, the metric namespace, dimension and
names, the reason words, the bearer prefix, the ledger's TTL attribute and the longest request.
"""

import json
import re
import subprocess

import hcl2
import pytest
from hcl2 import SerializationOptions

from relay_contract import ROOT, contract
from support import RELAY_BIN

TF = ROOT / "terraform"
MODULES = TF / "modules"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def parse(text):
    return hcl2.loads(text, serialization_options=OPTIONS)


def load_module(name):
    """All blocks of a module's .tf files: {"resource": {type: {name: body}}, "data": …, …}."""
    merged = {"resource": {}, "data": {}, "ephemeral": {}, "variable": {}, "output": {}, "locals": {},
              "terraform": [], "module": {}, "moved": []}
    for path in sorted((MODULES / name).glob("*.tf")):
        doc = parse(path.read_text())
        merged["terraform"].extend(doc.get("terraform", []))
        for kind in ("resource", "data", "ephemeral"):
            for block in doc.get(kind, []):
                for type_, named in block.items():
                    merged[kind].setdefault(type_, {}).update(named)
        for kind in ("variable", "output", "module"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        merged["moved"].extend(doc.get("moved", []))
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged


CONTRACT = contract()
RECEIVER_ENV = set(CONTRACT["receiver"]["env"])
REASONS = {r["reason"] for r in CONTRACT["reasons"]}
METRICS = CONTRACT["metrics"]
NAMESPACE = METRICS["namespace"]
DIMENSION = (METRICS["dimension"]["name"], METRICS["dimension"]["value"])
BEARER = CONTRACT["receiver"]["bearer_prefix"]
TTL_ATTRIBUTE = CONTRACT["ledger"]["ttl_attribute"]
AWS_REQUIRED = {"RELAY_BACKEND", "RELAY_INTEGRATIONS_TABLE", "RELAY_LEDGER_TABLE", "RELAY_QUEUE_URL",
                "RELAY_MASTER_KEY_SECRET_ID"}


@pytest.fixture(scope="module")
def receiver():
    return load_module("receiver")


@pytest.fixture(scope="module")
def source():
    return load_module("s3-source")


@pytest.fixture(scope="module")
def org():
    return load_module("org-source")


@pytest.fixture(scope="module")
def delivery():
    """The delivery chain s3-source and org-source share (rule → API destination → receiver,
    dead-letter queue and alarm)."""
    return load_module("delivery")


def only(mapping):
    (value,) = mapping.values()
    return value


def first(block):
    return block[0] if isinstance(block, list) else block


# --- the Lambda's environment is the receiver's documented list -----------------------------

def test_the_lambda_gets_exactly_the_receivers_variable_names(receiver):
    function = receiver["resource"]["aws_lambda_function"]["receiver"]
    names = set(first(function["environment"])["variables"])
    assert names <= RECEIVER_ENV, f"not read by the receiver: {names - RECEIVER_ENV}"
    assert AWS_REQUIRED <= names, f"missing: {AWS_REQUIRED - names}"
    assert first(function["environment"])["variables"]["RELAY_BACKEND"] == "aws"
    assert function["runtime"] == "provided.al2023" and function["handler"] == "bootstrap"


def test_the_cli_environment_output_uses_the_same_names(receiver):
    names = set(receiver["output"]["cli_environment"]["value"])
    assert AWS_REQUIRED <= names <= RECEIVER_ENV


def test_the_cli_page_lists_every_variable_the_lambda_gets(receiver):
    readme = (ROOT / "docs" / "cli.md").read_text()
    for function in receiver["resource"]["aws_lambda_function"].values():
        for name in first(function["environment"])["variables"]:
            assert f"| `{name}` |" in readme, name


# --- least privilege -------------------------------------------------------------------------

def identity_policies(module):
    """The policy documents attached to roles: these must name exact actions and resources."""
    documents = module["data"].get("aws_iam_policy_document", {})
    attached = []
    for policy in module["resource"].get("aws_iam_role_policy", {}).values():
        match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", policy["policy"])
        assert match, f"role policies must come from a policy document: {policy['policy']}"
        attached.append((match.group(1), documents[match.group(1)]))
    return attached


@pytest.mark.parametrize("module_name", ["receiver", "s3-source", "delivery"])
def test_role_policies_name_exact_actions_and_known_arns(module_name):
    module = load_module(module_name)
    policies = identity_policies(module)
    assert policies, "each module attaches a role policy"
    for name, document in policies:
        for statement in document["statement"]:
            for action in statement["actions"]:
                assert "*" not in action, f"{name}: wildcard action {action}"
            resources = statement["resources"]
            for resource in [resources] if isinstance(resources, str) else resources:
                assert resource != "*", f"{name}: resource * where the ARN is known"
                # a resource's ARN, or one built from the stack's own names: never a literal
                assert resource.startswith(("${", "arn:${local.partition}:")), \
                    f"{name}: hard-coded resource {resource}"


def test_the_key_policy_gives_services_only_what_they_need(receiver):
    document = receiver["data"]["aws_iam_policy_document"]["kms"]
    for statement in document["statement"]:
        principal = first(statement["principals"])
        if {"*", "kms:*"} & set(statement["actions"]):
            # Only the account root administers the key, as in AWS's default key policy.
            assert principal["type"] == "AWS" and principal["identifiers"][0].endswith(":root")
        assert principal["identifiers"] != ["*"]


# --- queues: dead-letter queues and encryption -----------------------------------------------

@pytest.mark.parametrize("module_name", ["receiver", "delivery"])
def test_every_queue_is_encrypted_and_has_or_is_a_dead_letter_queue(module_name):
    module = load_module(module_name)
    queues = module["resource"]["aws_sqs_queue"]
    text = json.dumps(module["resource"])
    for name, queue in queues.items():
        encrypted = queue.get("kms_master_key_id") not in (None, "") or queue.get("sqs_managed_sse_enabled")
        assert encrypted, f"queue {name} is not encrypted"
        if "redrive_policy" in queue:
            assert "deadLetterTargetArn" in queue["redrive_policy"]
            continue
        is_dlq = f"aws_sqs_queue.{name}.arn" in text
        assert is_dlq, f"queue {name} has no dead-letter queue and is none"


def test_the_ingest_queue_redrives_to_its_dlq(receiver):
    ingest = receiver["resource"]["aws_sqs_queue"]["ingest"]
    assert "aws_sqs_queue.dlq.arn" in ingest["redrive_policy"]


# SQS keeps a message at most 1,209,600 s (14 days); the runbook gives that as the deadline for
# replaying a dead-letter queue.
SQS_MAX_RETENTION_SECONDS = 14 * 86_400


def test_the_dead_letter_queues_keep_messages_as_long_as_sqs_allows(receiver, delivery):
    for module in (receiver, delivery):
        assert module["resource"]["aws_sqs_queue"]["dlq"]["message_retention_seconds"] == SQS_MAX_RETENTION_SECONDS


def test_each_dead_letter_queue_has_a_depth_alarm(receiver, delivery):
    for module, queue in ((receiver, "dlq"), (delivery, "dlq")):
        alarms = [a for a in module["resource"]["aws_cloudwatch_metric_alarm"].values()
                  if a.get("dimensions") == {"QueueName": f"${{aws_sqs_queue.{queue}.name}}"}]
        assert len(alarms) == 1, module
        [alarm] = alarms
        assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["alarm_actions"] and alarm["ok_actions"] == alarm["alarm_actions"]
    # The customer's alarm names the replay command and its deadline.
    description = delivery["resource"]["aws_cloudwatch_metric_alarm"]["dlq_depth"]["alarm_description"]
    assert "bucket-relay replay eventbridge --dlq-url" in description and "14 days" in description


def test_the_receiver_may_read_the_ingest_queue_it_probes_and_nothing_more(receiver):
    # A test event's probe reads the queue's ARN (GetQueueAttributes); the receiver never receives
    # or deletes jobs.
    statements = receiver["data"]["aws_iam_policy_document"]["receiver"]["statement"]
    [send] = [st for st in statements if st["sid"] == "SendJobs"]
    assert set(send["actions"]) == {"sqs:SendMessage", "sqs:GetQueueAttributes"}
    assert send["resources"] == ["${aws_sqs_queue.ingest.arn}"]


# --- tables ----------------------------------------------------------------------------------

def test_tables_have_recovery_encryption_and_the_ledger_ttl(receiver):
    tables = receiver["resource"]["aws_dynamodb_table"]
    for name, table in tables.items():
        assert first(table["point_in_time_recovery"])["enabled"] is True, name
        sse = first(table["server_side_encryption"])
        assert sse["enabled"] is True and "aws_kms_key" in sse["kms_key_arn"], name
    assert tables["integrations"]["hash_key"] == "id"
    assert tables["ledger"]["hash_key"] == "job_id"
    ttl = first(tables["ledger"]["ttl"])
    assert ttl["attribute_name"] == TTL_ATTRIBUTE and ttl["enabled"] is True


def test_the_key_rotates_and_encrypts_logs_topic_and_secret(receiver):
    resources = receiver["resource"]
    assert resources["aws_kms_key"]["this"]["enable_key_rotation"] is True
    for group in resources["aws_cloudwatch_log_group"].values():
        assert "aws_kms_key" in group["kms_key_id"]
    assert "aws_kms_key" in only(resources["aws_sns_topic"])["kms_master_key_id"]
    assert "aws_kms_key" in only(resources["aws_secretsmanager_secret"])["kms_key_id"]


def resolve_locals(text, module):
    """`text` with each `${local.NAME}` replaced by that local's own text, until none is left."""
    for _ in range(10):
        replaced = re.sub(r"\$\{local\.(\w+)\}", lambda m: str(module["locals"][m.group(1)]), text)
        if replaced == text:
            return text
        text = replaced
    return text


def test_every_log_group_encrypted_with_the_key_is_one_its_policy_lets_logs_use_it_for(receiver):
    # CloudWatch Logs uses a key only as its key policy allows, and the policy names each log group
    # by the encryption context (`kms:EncryptionContext:aws:logs:arn`): a group it does not name
    # cannot be created with the key (AWS: "Encrypt log data in CloudWatch Logs using AWS KMS").
    policy = receiver["data"]["aws_iam_policy_document"]["kms"]
    allowed = set()
    for statement in policy["statement"]:
        for condition in statement.get("condition", []):
            if condition["variable"] == "kms:EncryptionContext:aws:logs:arn":
                for value in condition["values"]:
                    allowed.add(resolve_locals(value, receiver).split(":log-group:", 1)[1])
    assert allowed, "the key policy lets CloudWatch Logs use the key for named log groups"
    for name, group in receiver["resource"]["aws_cloudwatch_log_group"].items():
        if "aws_kms_key" in group.get("kms_key_id", ""):
            assert resolve_locals(group["name"], receiver) in allowed, name


# --- alarms ----------------------------------------------------------------------------------

def test_every_alarm_the_runbook_needs_exists_and_notifies_the_topic(receiver):
    alarms = receiver["resource"]["aws_cloudwatch_metric_alarm"]
    # The receiver function's and the dead-letter queue's (the poller's, the ingest queue's and
    # the metric-math alarm have tests of their own).
    by_metric = {(a["namespace"], a["metric_name"]): a for name, a in alarms.items()
                 if "namespace" in a and name not in ("queue_depth", "queue_age")
                 and "aws_lambda_function.poller" not in str(a.get("dimensions"))}
    for key in [("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/Lambda", "Errors"),
                ("AWS/Lambda", "Throttles"), ("AWS/Lambda", "Duration")]:
        assert key in by_metric, f"missing alarm on {key}"
    assert "aws_sqs_queue.dlq.name" in by_metric[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]["dimensions"]["QueueName"]
    assert "var.timeout" in str(by_metric[("AWS/Lambda", "Duration")]["threshold"])
    for alarm in alarms.values():
        assert alarm["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"]


def test_rejected_reason_alarms_read_the_receivers_embedded_metrics(receiver):
    rejected = receiver["resource"]["aws_cloudwatch_metric_alarm"]["rejected"]
    assert rejected["namespace"] in (NAMESPACE, "${local.metrics_ns}")
    assert receiver["locals"]["metrics_ns"] == NAMESPACE
    assert receiver["locals"]["metrics_dim"] == {DIMENSION[0]: DIMENSION[1]}
    assert rejected["metric_name"] == METRICS["reason_prefix"] + "${each.key}"
    defaults = receiver["variable"]["rejected_reason_alarms"]["default"]
    assert set(defaults) <= REASONS, f"not reasons the receiver emits: {set(defaults) - REASONS}"
    assert {"invalid_secret", "bucket_mismatch", "malformed_event"} <= set(defaults)


def test_the_function_url_is_public_because_the_secret_is_the_authentication(receiver):
    url = only(receiver["resource"]["aws_lambda_function_url"])
    assert url["authorization_type"] == "NONE"


# --- what AWS enforces and the emulators don't ------------------------------------------------

def version_floor(constraint):
    """The lowest version a `>= X.Y` constraint admits, as a tuple."""
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)(?:\.(\d+))?", constraint.strip())
    assert match, f"expected a '>= X.Y' constraint, got {constraint!r}"
    return tuple(int(part or 0) for part in match.groups())


def required(module, provider):
    (terraform,) = module["terraform"]
    providers = {name: spec for block in terraform["required_providers"] for name, spec in block.items()}
    return providers[provider]["version"]


def test_a_public_function_url_gets_both_resource_policy_statements(receiver):
    # Lambda (since October 2025): a NONE function URL needs lambda:InvokeFunctionUrl with
    # FunctionUrlAuthType NONE AND lambda:InvokeFunction with InvokedViaFunctionUrl, both for
    # principal "*"; with either missing every request is answered 403.
    permissions = receiver["resource"].get("aws_lambda_permission", {}).values()
    function = "${aws_lambda_function.receiver.function_name}"
    url_statements = [p for p in permissions if p["action"] == "lambda:InvokeFunctionUrl"]
    invoke_statements = [p for p in permissions if p["action"] == "lambda:InvokeFunction"]
    assert len(url_statements) == 1, "no lambda:InvokeFunctionUrl statement: the URL answers 403"
    assert len(invoke_statements) == 1, "no lambda:InvokeFunction statement: the URL answers 403"
    (url,), (invoke,) = url_statements, invoke_statements
    assert (url["principal"], url["function_url_auth_type"], url["function_name"]) == ("*", "NONE", function)
    assert (invoke["principal"], invoke["invoked_via_function_url"], invoke["function_name"]) == ("*", True, function)
    assert "qualifier" not in url and "qualifier" not in invoke, "the URL is on the unqualified function"


def test_the_provider_constraints_admit_only_versions_with_what_the_module_uses(receiver):
    # invoked_via_function_url: AWS provider 6.29; write-only attributes: Terraform 1.11;
    # ephemeral random_password: random provider 3.7.
    assert version_floor(required(receiver, "aws")) >= (6, 29, 0)
    assert version_floor(required(receiver, "random")) >= (3, 7, 0)
    (terraform,) = receiver["terraform"]
    assert version_floor(terraform["required_version"]) >= (1, 11, 0)


@pytest.mark.parametrize("module_name", ["receiver", "s3-source", "org-source", "delivery"])
def test_no_attribute_deprecated_in_aws_provider_v6(module_name):
    text = "\n".join(path.read_text() for path in (MODULES / module_name).glob("*.tf"))
    assert not re.search(r"data\.aws_region\.\w+\.name\b", text), "aws_region.name is deprecated: use .region"


def test_reserved_concurrency_reserves_nothing_unless_asked(receiver):
    # AWS keeps 100 of an account's concurrency unreserved: a default reservation fails to apply
    # in accounts with a small quota.
    variable = receiver["variable"]["reserved_concurrency"]
    assert variable["default"] is None
    condition = first(variable["validation"])["condition"]
    assert "null" in condition or "coalesce" in condition, "the validation must accept null"
    function = receiver["resource"]["aws_lambda_function"]["receiver"]
    assert function["reserved_concurrent_executions"] == "${var.reserved_concurrency}"


def test_the_master_key_never_enters_the_terraform_state(receiver):
    # A random_* resource's result and a secret version's secret_string are stored in the state.
    stateful_random = [t for t in receiver["resource"] if t.startswith("random_")]
    assert stateful_random == [], f"random resources keep their value in the state: {stateful_random}"
    version = only(receiver["resource"]["aws_secretsmanager_secret_version"])
    assert "secret_string" not in version and "secret_binary" not in version
    # A random key, or (master_key_in_kms) a keyring that only names the KMS keys.
    assert version["secret_string_wo"] == \
        "${var.master_key_in_kms ? local.kms_keyring : ephemeral.random_password.master_key.result}"
    assert version["secret_string_wo_version"] == 1
    key = receiver["ephemeral"]["random_password"]["master_key"]
    # 64 characters from 0-9a-f: 32 bytes of hex, the form the receiver reads.
    assert key["length"] == 64
    assert (key["lower"], key["upper"], key["numeric"], key["special"]) == (False, False, True, True)
    assert key["override_special"] == "abcdef"


def test_the_master_key_in_kms_is_used_only_as_the_issue_allows(receiver):
    """The functions may GenerateMac (HMAC_SHA_256) and Decrypt (with an integration_id
    context); only the key administrators Encrypt and administer; no account-root statement."""
    policies = receiver["data"]["aws_iam_policy_document"]
    users = "${local.key_users}"
    mac = {s["sid"]: s for s in policies["master_mac_key"]["statement"]}
    seal = {s["sid"]: s for s in policies["master_seal_key"]["statement"]}
    for statements in (mac, seal):
        for statement in statements.values():
            identifiers = first(statement["principals"])["identifiers"]
            assert ":root" not in json.dumps(identifiers) and identifiers != ["*"]
            if statement["sid"] == "OperatorsAdminister":
                assert not {"kms:Encrypt", "kms:Decrypt", "kms:GenerateMac"} & set(statement["actions"])
    derive = mac["OperatorsAndFunctionsDerive"]
    assert derive["actions"] == ["kms:GenerateMac"]
    assert "local.key_users" in first(derive["principals"])["identifiers"]
    assert first(derive["condition"])["values"] == ["HMAC_SHA_256"]
    assert seal["FunctionsOpen"]["actions"] == ["kms:Decrypt"]
    assert first(seal["FunctionsOpen"]["principals"])["identifiers"] == users
    assert first(seal["FunctionsOpen"]["condition"])["variable"] == "${local.seal_context.variable}"
    assert receiver["locals"]["seal_context"]["values"] == ["integration_id"]
    assert sorted(seal["OperatorsSealAndOpen"]["actions"]) == ["kms:Decrypt", "kms:Encrypt"]
    keys = receiver["resource"]["aws_kms_key"]
    assert (keys["master_mac"]["key_usage"], keys["master_mac"]["customer_master_key_spec"]) == \
        ("GENERATE_VERIFY_MAC", "HMAC_256")
    assert keys["master_seal"]["key_usage"] == "ENCRYPT_DECRYPT" and keys["master_seal"]["enable_key_rotation"]
    # The keyring names the two keys in the shape the receiver reads (receiver/src/keys.rs).
    ring = receiver["locals"]["kms_keyring"]
    assert "kms_mac_key" in ring and "kms_seal_key" in ring and "current" in ring
    environment = json.dumps(receiver["locals"]["kms_cli_environment"])
    assert "RELAY_MASTER_KEY_KMS_ID" in environment and "RELAY_SEALING_KEY_KMS_ID" in environment
    assert {"RELAY_MASTER_KEY_KMS_ID", "RELAY_SEALING_KEY_KMS_ID"} <= RECEIVER_ENV


# --- the customer's S3 module ----------------------------------------------------------------

def test_the_connection_sends_the_secret_as_a_bearer_token(source, delivery):
    connection = only(delivery["resource"]["aws_cloudwatch_event_connection"])
    assert connection["authorization_type"] == "API_KEY"
    api_key = first(first(connection["auth_parameters"])["api_key"])
    assert api_key["key"] == "Authorization"
    assert api_key["value"] == BEARER + "${var.event_source_secret}"
    assert source["variable"]["event_source_secret"]["sensitive"] is True
    assert delivery["variable"]["event_source_secret"]["sensitive"] is True


def test_the_target_retries_for_a_day_and_dead_letters_the_rest(source, delivery):
    target = only(delivery["resource"]["aws_cloudwatch_event_target"])
    retry = first(target["retry_policy"])
    assert retry["maximum_event_age_in_seconds"] == "${var.maximum_event_age_seconds}"
    assert retry["maximum_retry_attempts"] == "${var.maximum_retry_attempts}"
    assert "aws_sqs_queue.dlq.arn" in first(target["dead_letter_config"])["arn"]
    assert (target["rule"], target["event_bus_name"]) == ("${var.rule_name}", "${var.event_bus_name}")
    assert source["variable"]["maximum_event_age_seconds"]["default"] == 86400
    assert source["variable"]["maximum_retry_attempts"]["default"] == 185
    # The one bucket's rule, on the default bus.
    chain = source["module"]["delivery"]
    assert (chain["rule_name"], chain["rule_arn"]) == ("${aws_cloudwatch_event_rule.object_created.name}",
                                                      "${aws_cloudwatch_event_rule.object_created.arn}")
    assert "event_bus_name" not in chain
    # Only that rule may dead-letter into the queue, and only EventBridge of this account may
    # invoke the receiver with the role.
    [dead_letters] = delivery["data"]["aws_iam_policy_document"]["dlq"]["statement"]
    assert first(dead_letters["condition"])["values"] == ["${var.rule_arn}"]
    [trust] = delivery["data"]["aws_iam_policy_document"]["assume_events"]["statement"]
    assert first(trust["condition"])["variable"] == "aws:SourceAccount"


def test_the_rule_matches_object_created_on_the_bucket(source):
    # EventBridge's S3 events carry the bucket at detail.bucket.name (AWS's "Amazon S3 event
    # notifications in EventBridge" reference); a pattern without it would send every bucket's
    # uploads in the account to this integration.
    rule = only(source["resource"]["aws_cloudwatch_event_rule"])
    pattern = rule["event_pattern"]
    assert re.search(r"source\s*=\s*\[\s*\"?aws\.s3\"?\s*\]", pattern), pattern
    assert re.search(r"\"detail-type\"\s*=\s*\[\s*\"?Object Created\"?\s*\]", pattern), pattern
    assert re.search(r"detail\s*=\s*local\.detail", pattern), pattern
    detail = source["locals"]["detail"]
    assert detail.startswith("${merge({bucket = {name = [var.bucket_name]}}, "), detail


@pytest.mark.parametrize("url, valid", [
    ("https://abc.lambda-url.eu-west-1.on.aws/v1/integrations/int_abc123/events", True),
    ("https://relay.example.com/prefix/v1/integrations/int_abc123/events", True),
    ("http://abc.lambda-url.eu-west-1.on.aws/v1/integrations/int_abc123/events", False),
    ("https://abc.lambda-url.eu-west-1.on.aws/", False),
])
@pytest.mark.parametrize("module_name", ["s3-source", "org-source"])
def test_the_events_url_must_be_https_at_plan_time(module_name, url, valid):
    module = load_module(module_name)
    condition = first(module["variable"]["events_url"]["validation"])["condition"]
    regex = re.search(r'regex\("(.+)", var\.events_url\)', condition).group(1).replace("\\\\", "\\")
    assert bool(re.fullmatch(regex, url)) is valid


# --- shape: described variables, READMEs, examples, skips with reasons ----------------------

@pytest.mark.parametrize("module_name", ["receiver", "s3-source", "org-source", "delivery"])
def test_every_variable_and_output_is_described_and_the_readme_tables_are_generated(module_name):
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    import terraform_docs
    module = load_module(module_name)
    for kind in ("variable", "output"):
        for name, body in module[kind].items():
            assert body.get("description"), f"{kind} {name} has no description"
    readme = (MODULES / module_name / "README.md").read_text()
    assert terraform_docs.rewritten(readme, MODULES / module_name) == readme, \
        "regenerate the tables: ~/.cache/bucket-relay/venv/bin/python scripts/terraform_docs.py"


@pytest.mark.parametrize("example", ["receiver-minimal", "receiver-complete", "s3-source-minimal", "s3-source-complete",
                                     "org-source-minimal", "org-source-complete"])
def test_examples_use_their_module(example):
    doc = parse((TF / "examples" / example / "main.tf").read_text())
    sources = [body["source"] for block in doc["module"] for body in block.values()]
    assert sources == [f"../../modules/{example.rsplit('-', 1)[0]}"]


def test_every_checkov_skip_carries_its_reason():
    skips = [(path, line) for path in TF.rglob("*.tf") for line in path.read_text().splitlines()
             if "checkov:skip=" in line]
    assert skips, "the skip list is where the by-design exceptions are written down"
    for path, line in skips:
        match = re.search(r"checkov:skip=(CKV2?_AWS_\d+):\s*(.+)", line)
        assert match and len(match.group(2)) >= 20, f"{path}: skip without a reason: {line.strip()}"


def created_module_block(tmp_path, module_name, module, *create):
    """`integrations create --provider s3 …` with `create`: its JSON, and the module block it prints,
    checked against the module's variables (only known arguments, every required one)."""
    result = subprocess.run(
        [str(RELAY_BIN), "--data-dir", str(tmp_path), "--json", "integrations", "create", "--provider", "s3",
         *create, "--receiver-url", "https://relay.example.com"],
        capture_output=True, text=True, check=True)
    created = json.loads(result.stdout)
    block = parse(created["terraform"])
    (printed,) = [body for entry in block["module"] for body in entry.values()]
    assert printed["source"].endswith(f"/terraform/modules/{module_name}")
    arguments = set(printed) - {"source"}
    assert arguments <= set(module["variable"]), arguments - set(module["variable"])
    required = {name for name, v in module["variable"].items() if "default" not in v}
    assert required <= arguments
    return created, printed


def test_create_prints_a_module_block_the_s3_source_module_accepts(tmp_path, source):
    created, module = created_module_block(tmp_path, "s3-source", source,
                                           "--bucket", "docs", "--prefix", "in/", "--suffix", ".pdf")
    assert module["events_url"] == created["events_url"]
    assert (module["prefix"], module["suffixes"]) == ("in/", [".pdf"])
    assert created["secret"] not in created["terraform"], "the secret stays out of the block"
    assert f"TF_VAR_bucket_relay_secret='{created['secret']}'" in created["setup"]


def test_create_prints_a_module_block_the_org_source_module_accepts(tmp_path, org):
    created, module = created_module_block(tmp_path, "org-source", org, "--bucket", "logs-*",
                                           "--organization", "o-a1b2c3d4e5", "--region", "eu-west-1")
    assert (module["organization_id"], module["bucket_patterns"], module["monitored_regions"]) == \
        ("o-a1b2c3d4e5", ["logs-*"], ["eu-west-1"])
    assert module["events_url"] == created["events_url"]
    assert created["secret"] not in created["terraform"], "the secret stays out of the block"


def test_the_lambda_timeout_stays_under_the_receivers_claim_lease(receiver):
    # A request that outlives its claim's lease could have its jobs claimed and sent again by a
    # redelivery; the receiver's lease assumes no request runs longer than MAX_REQUEST_TIME.
    longest = CONTRACT["receiver"]["max_request_seconds"]
    condition = first(receiver["variable"]["timeout"]["validation"])["condition"]
    ceiling = int(re.search(r"var\.timeout <= (\d+)", condition).group(1))
    assert ceiling <= longest < CONTRACT["receiver"]["claim_lease_seconds"]


@pytest.mark.parametrize("text, filtered_in_the_rule", [
    ("in/", True), (".pdf", True), ("2026/11/", True),
    ("in/my docs/", False), ("a+b/", False), ("100%/", False), ("résumé/", False), ("x:y/", False),
])
def test_the_rule_filters_keys_only_where_url_encoding_cannot_change_them(source, text, filtered_in_the_rule):
    # S3 may write the key URL-encoded in the event EventBridge matches against: a filter with a
    # space would never match "my+docs", and the rule would drop events the receiver wants.
    pattern = source["locals"]["unchanged_by_encoding"]
    assert bool(re.fullmatch(pattern.strip("^$"), text)) is filtered_in_the_rule
    assert "local.rule_prefix" in source["locals"]["key_filters"]
    assert "var.prefix" not in source["locals"]["key_filters"], "the raw prefix never reaches the rule"


# --- poll mode: the poller function, its schedule and alarms; the customer's read role -------

LISTING = CONTRACT["listing"]


def test_the_poller_is_the_same_zip_in_poll_mode_with_the_aws_backends(receiver):
    functions = receiver["resource"]["aws_lambda_function"]
    poller, handler = functions["poller"], functions["receiver"]
    variables = first(poller["environment"])["variables"]
    assert set(variables) <= RECEIVER_ENV and AWS_REQUIRED <= set(variables)
    assert variables["RELAY_LAMBDA_HANDLER"] == LISTING["lambda_handler_poll"]
    assert "RELAY_LAMBDA_HANDLER" not in first(handler["environment"])["variables"]
    for field in ("filename", "source_code_hash", "runtime", "handler", "architectures"):
        assert poller[field] == handler[field], field
    assert poller["timeout"] == "${var.poll_timeout}"


def test_ticks_never_overlap_and_a_failed_tick_is_not_retried(receiver):
    condition = first(receiver["variable"]["poll_timeout"]["validation"])["condition"]
    assert "var.poll_timeout < var.poll_every_minutes * 60" in condition
    schedule = receiver["resource"]["aws_scheduler_schedule"]["poll"]
    assert schedule["schedule_expression"] == "rate(${var.poll_every_minutes} minutes)"
    assert first(schedule["flexible_time_window"])["mode"] == "OFF"
    target = first(schedule["target"])
    assert "aws_lambda_function.poller" in target["arn"]
    assert first(target["retry_policy"])["maximum_retry_attempts"] == 0
    invoke = receiver["resource"]["aws_lambda_function_event_invoke_config"]["poller"]
    assert invoke["maximum_retry_attempts"] == 0


def test_the_scheduler_may_invoke_only_the_poller(receiver):
    documents = receiver["data"]["aws_iam_policy_document"]
    [statement] = documents["scheduler"]["statement"]
    assert statement["actions"] == ["lambda:InvokeFunction"]
    assert statement["resources"] == ["arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.poller_name}"]
    trust = first(documents["assume_scheduler"]["statement"])
    assert first(trust["principals"])["identifiers"] == ["scheduler.amazonaws.com"]
    assert first(trust["condition"])["variable"] == "aws:SourceAccount"


def test_the_poller_assumes_roles_only_with_our_external_id_and_session_name(receiver):
    statements = receiver["data"]["aws_iam_policy_document"]["poller"]["statement"]
    [assume] = [st for st in statements if st["actions"] == ["sts:AssumeRole"]]
    conditions = {c["variable"]: (c["test"], c["values"]) for c in assume["condition"]}
    assert conditions["sts:ExternalId"] == ("StringLike", [LISTING["external_id_prefix"] + "*"])
    assert conditions["sts:RoleSessionName"] == ("StringEquals", [LISTING["session_name"]])
    assert assume["resources"] == "${var.poll_read_role_arns}"
    # The poller lists integrations (Scan) and keeps watermarks in the ledger table.
    actions = {a for st in statements for a in st["actions"]}
    assert {"dynamodb:Scan", "dynamodb:PutItem", "sqs:SendMessage", "secretsmanager:GetSecretValue"} <= actions


def test_the_receiver_assumes_read_roles_for_lookups_only_with_our_external_id_and_its_session_name(receiver):
    statements = receiver["data"]["aws_iam_policy_document"]["receiver"]["statement"]
    [assume] = [st for st in statements if st["actions"] == ["sts:AssumeRole"]]
    conditions = {c["variable"]: (c["test"], c["values"]) for c in assume["condition"]}
    assert conditions == {"sts:ExternalId": ("StringLike", [LISTING["external_id_prefix"] + "*"]),
                          "sts:RoleSessionName": ("StringEquals", [LISTING["lookup_session_name"]])}
    assert assume["resources"] == "${var.lookup_read_role_arns}"
    assert receiver["output"]["receiver_role_arn"]["value"] == "${aws_iam_role.receiver.arn}"


def test_failed_lookups_are_counted_from_their_log_lines_and_alarmed(receiver):
    metric_filter = receiver["resource"]["aws_cloudwatch_log_metric_filter"]["lookups_failed"]
    assert metric_filter["log_group_name"] == "${aws_cloudwatch_log_group.receiver.name}"
    # CloudWatch Logs' JSON filter syntax, on the message the receiver writes.
    assert metric_filter["pattern"] == '{ $.message = "%s" }' % LISTING["lookup_failed_message"]
    transformation = first(metric_filter["metric_transformation"])
    alarm = receiver["resource"]["aws_cloudwatch_metric_alarm"]["lookups_failed"]
    assert alarm["namespace"] == transformation["namespace"] == "${local.metrics_ns}"
    assert "aws_cloudwatch_log_metric_filter.lookups_failed" in alarm["metric_name"]
    assert "dimensions" not in alarm, "a metric filter's metric has no dimensions"
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)


def test_objects_missed_by_events_are_counted_from_the_pollers_log_lines_and_alarmed(receiver):
    metric_filter = receiver["resource"]["aws_cloudwatch_log_metric_filter"]["missed_by_events"]
    # The safety-net listings run in the poller, so its log group holds their lines.
    assert metric_filter["log_group_name"] == "${aws_cloudwatch_log_group.poller[0].name}"
    assert metric_filter["pattern"] == '{ $.message = "%s" }' % LISTING["missed_by_events_message"]
    transformation = first(metric_filter["metric_transformation"])
    alarm = receiver["resource"]["aws_cloudwatch_metric_alarm"]["missed_by_events"]
    assert alarm["namespace"] == transformation["namespace"] == "${local.metrics_ns}"
    assert "aws_cloudwatch_log_metric_filter.missed_by_events" in alarm["metric_name"]
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["treat_missing_data"] == "notBreaching", "no listing, no missed object"
    assert metric_filter["count"] == alarm["count"] == "${var.poll_enabled ? 1 : 0}"


DASHBOARD_VALUES = {"region": "eu-west-1", "namespace": "BucketRelay", "receiver_function": "relay",
                    "poller_function": "relay-poller", "queue": "relay-ingest", "dlq": "relay-ingest-dlq"}
AWS_METRICS = {
    "AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
}


def test_the_dashboard_is_json_naming_only_metrics_the_receiver_its_filters_or_aws_publish(receiver):
    resource = receiver["resource"]["aws_cloudwatch_dashboard"]["this"]
    template = (MODULES / "receiver" / "dashboard.json.tftpl").read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", template))
    assert placeholders == set(DASHBOARD_VALUES)
    assert "dashboard.json.tftpl" in resource["dashboard_body"]
    for name in placeholders:
        assert re.search(rf"\b{name}\b", resource["dashboard_body"]), f"templatefile passes no {name}"
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: DASHBOARD_VALUES[m.group(1)], template)
    widgets = json.loads(rendered)["widgets"]
    filters = receiver["resource"]["aws_cloudwatch_log_metric_filter"]
    filtered = {first(f["metric_transformation"])["name"] for f in filters.values()}
    published = set(METRICS["names"]) | filtered
    charted = set()
    for widget in widgets:
        for row in widget["properties"]["metrics"]:
            namespace, name, *rest = row
            dimensions = [part for part in rest if isinstance(part, str)]
            assert len(dimensions) % 2 == 0, row
            pairs = dict(zip(dimensions[::2], dimensions[1::2]))
            if namespace == "BucketRelay":
                assert name in published, name
                if name in METRICS["names"]:
                    assert pairs == {METRICS["dimension"]["name"]: METRICS["dimension"]["value"]}, row
                else:
                    assert pairs == {}, "a metric filter's metric has no dimensions"
            else:
                assert name in AWS_METRICS[namespace], row
                assert set(pairs.values()) <= set(DASHBOARD_VALUES.values()), row
            charted.add(name)
    outcomes = {f"{METRICS['outcome_prefix']}{o}" for o in CONTRACT["outcomes"]}
    assert outcomes <= charted, "every outcome is charted"
    assert {"missed_by_events", "object_lookups_failed", "ApproximateAgeOfOldestMessage",
            "ConcurrentExecutions", "Throttles"} <= charted


def test_the_ingest_queue_alarms_when_it_stalls_or_backs_up_as_the_runbook_says(receiver):
    alarms = receiver["resource"]["aws_cloudwatch_metric_alarm"]
    variables = receiver["variable"]
    age, depth = alarms["queue_age"], alarms["queue_depth"]
    for alarm in (age, depth):
        assert alarm["namespace"] == "AWS/SQS"
        assert alarm["dimensions"] == {"QueueName": "${aws_sqs_queue.ingest.name}"}
        assert alarm["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"]
    assert (age["metric_name"], age["threshold"]) == ("ApproximateAgeOfOldestMessage",
                                                      "${var.queue_age_alarm_seconds}")
    assert (depth["metric_name"], depth["threshold"]) == ("ApproximateNumberOfMessagesVisible",
                                                          "${var.queue_depth_alarm_messages}")
    # "> 1000 messages for 10 min": the smallest count over two 5-minute periods above it.
    assert variables["queue_depth_alarm_messages"]["default"] == 1000
    assert (depth["statistic"], depth["period"] * depth["evaluation_periods"]) == ("Minimum", 600)
    assert 60 <= variables["queue_age_alarm_seconds"]["default"] <= 3600


def test_the_poller_has_its_own_alarms(receiver):
    alarms = receiver["resource"]["aws_cloudwatch_metric_alarm"]
    poller = {a["metric_name"]: a for a in alarms.values() if "aws_lambda_function.poller" in str(a.get("dimensions"))}
    assert set(poller) == {"Errors", "Duration", "Invocations"}
    assert poller["Invocations"]["treat_missing_data"] == "breaching", "a poller that stopped is an alarm"
    assert "var.poll_timeout" in str(poller["Duration"]["threshold"])


def test_the_read_role_trusts_one_principal_with_the_external_id_and_may_only_list(source):
    documents = source["data"]["aws_iam_policy_document"]
    trust = first(documents["read_trust"]["statement"])
    assert trust["actions"] == ["sts:AssumeRole"]
    assert first(trust["principals"])["identifiers"] == ["${try(var.read_role.trusted_principal_arn, \"\")}"]
    condition = first(trust["condition"])
    assert (condition["test"], condition["variable"]) == ("StringEquals", "sts:ExternalId")
    [listing] = documents["read"]["statement"]
    assert sorted(listing["actions"]) == ["s3:ListBucket", "s3:ListBucketVersions"]
    assert listing["resources"] == ["${local.bucket_arn}"]
    prefix = first(listing["dynamic"])["condition"]
    assert first(prefix["content"])["variable"] == "s3:prefix"
    assert source["output"]["read_role_arn"]


def test_the_external_id_the_cli_prints_is_one_the_module_accepts(tmp_path, source):
    result = subprocess.run(
        [str(RELAY_BIN), "--data-dir", str(tmp_path), "--json", "integrations", "create", "--provider", "s3",
         "--bucket", "docs"], capture_output=True, text=True, check=True)
    created = json.loads(result.stdout)
    validations = source["variable"]["read_role"]["validation"]
    conditions = " ".join(v["condition"] for v in validations)
    pattern = re.search(r'regex\("([^"]+)", var\.read_role\.external_id\)', conditions)
    assert pattern, validations
    assert re.fullmatch(pattern.group(1), created["external_id"])
    assert "trusted_principal_arn" in created["read_access_setup"]
    assert created["external_id"] in created["read_access_setup"]


# --- org-source: an organization's buckets through one central bus ----------------------------

def test_only_the_organization_may_put_events_on_the_central_bus(org):
    [statement] = org["data"]["aws_iam_policy_document"]["central_bus"]["statement"]
    assert statement["actions"] == ["events:PutEvents"]
    assert statement["resources"] == ["${aws_cloudwatch_event_bus.central.arn}"]
    [condition] = statement["condition"]
    assert (condition["test"], condition["variable"], condition["values"]) == \
        ("StringEquals", "aws:PrincipalOrgID", ["${var.organization_id}"])
    policy = org["resource"]["aws_cloudwatch_event_bus_policy"]["central"]
    assert policy["event_bus_name"] == "${aws_cloudwatch_event_bus.central.name}"


def test_the_stack_set_reaches_every_account_of_the_units_in_each_monitored_region(org):
    stack_set = org["resource"]["aws_cloudformation_stack_set"]["members"]
    assert stack_set["permission_model"] == "SERVICE_MANAGED"
    auto = first(stack_set["auto_deployment"])
    assert auto["enabled"] is True and auto["retain_stacks_on_account_removal"] is False
    # The template's role has no fixed name (one per Region of an account): CAPABILITY_IAM.
    assert stack_set["capabilities"] == ["CAPABILITY_IAM"]
    instances = org["resource"]["aws_cloudformation_stack_instances"]["members"]
    assert instances["regions"] == "${var.monitored_regions}"
    assert first(instances["deployment_targets"])["organizational_unit_ids"] == "${var.organizational_unit_ids}"
    assert instances["call_as"] == stack_set["call_as"] == "${var.call_as}"


def test_each_member_rule_sends_to_the_central_bus_with_a_role_that_may_only_put_there(org):
    resources = org["locals"]["member_template"]["Resources"]
    role, rule = resources["ForwardRole"]["Properties"], resources["ObjectWritten"]["Properties"]
    [target] = rule["Targets"]
    assert target["Arn"] == "${aws_cloudwatch_event_bus.central.arn}"
    assert target["RoleArn"] == {"Fn::GetAtt": ["ForwardRole", "Arn"]}
    assert "RoleName" not in role
    [policy] = role["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("events:PutEvents", "${aws_cloudwatch_event_bus.central.arn}")
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    # Members and the central bus forward the same events.
    assert rule["EventPattern"] == "${local.object_written}"
    central = org["resource"]["aws_cloudwatch_event_rule"]["to_receiver"]
    assert central["event_pattern"] == "${jsonencode(local.object_written)}"
    assert central["event_bus_name"] == "${aws_cloudwatch_event_bus.central.name}"


def test_the_central_bus_calls_the_receiver_with_retries_and_a_dead_letter_queue(org, delivery):
    chain = org["module"]["delivery"]
    assert (chain["rule_name"], chain["event_bus_name"]) == ("${aws_cloudwatch_event_rule.to_receiver.name}",
                                                            "${aws_cloudwatch_event_bus.central.name}")
    assert chain["rule_arn"] == "${aws_cloudwatch_event_rule.to_receiver.arn}"
    for setting in ("events_url", "event_source_secret", "maximum_retry_attempts", "maximum_event_age_seconds",
                    "dlq_kms_key_arn", "alarm_actions"):
        assert chain[setting] == f"${{var.{setting}}}"
    target = delivery["resource"]["aws_cloudwatch_event_target"]["receiver"]
    assert target["arn"] == "${aws_cloudwatch_event_api_destination.receiver.arn}"
    assert first(target["dead_letter_config"])["arn"] == "${aws_sqs_queue.dlq.arn}"


@pytest.mark.parametrize("module_name", ["s3-source", "org-source"])
def test_the_shared_delivery_chain_takes_over_the_earlier_state_and_its_inputs(module_name, delivery):
    module = load_module(module_name)
    chain = module["module"]["delivery"]
    assert chain["source"] == "../delivery"
    arguments = set(chain) - {"source"}
    assert arguments <= set(delivery["variable"]), arguments - set(delivery["variable"])
    assert {n for n, v in delivery["variable"].items() if "default" not in v} <= arguments
    # Each resource the module had before the chain moved has a moved block to the same type and
    # name in the delivery module, and none is left behind: an upgrade replaces nothing.
    moves = {m["from"].strip("${}"): m["to"].strip("${}") for m in module["moved"]}
    shared = {f"{type_}.{name}" for type_, named in delivery["resource"].items() for name in named}
    assert set(moves) == shared
    assert all(to == f"module.delivery.{source}" for source, to in moves.items())
    kept = {f"{type_}.{name}" for type_, named in module["resource"].items() for name in named}
    assert not kept & shared, kept & shared


def test_the_organization_trail_logs_only_object_writes_validated_and_encrypted(org):
    trail = org["resource"]["aws_cloudtrail"]["organization"]
    assert trail["is_organization_trail"] is True and trail["is_multi_region_trail"] is True
    assert trail["enable_log_file_validation"] is True
    assert trail["kms_key_id"] == "${var.organization_trail.kms_key_arn}"
    selector = first(trail["advanced_event_selector"])
    fields = {f["field"]: f.get("equals") for f in selector["field_selector"]}
    assert fields["eventCategory"] == ["Data"]
    assert fields["resources.type"] == ["AWS::S3::Object"]
    assert fields["readOnly"] == ["false"]
    assert fields["eventName"] == "${local.written}"
    assert org["locals"]["written"] == ["PutObject", "CopyObject", "CompleteMultipartUpload"]
    block = org["resource"]["aws_s3_bucket_public_access_block"]["trail"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    statements = org["data"]["aws_iam_policy_document"]["trail_bucket"]["statement"]
    deny = [st for st in statements if st.get("effect") == "Deny"]
    assert [first(st["condition"])["variable"] for st in deny] == ["aws:SecureTransport"]
    writes = [st for st in statements if st["actions"] == ["s3:PutObject"]]
    assert all(c["variable"] in ("aws:SourceArn", "s3:x-amz-acl") for st in writes for c in st["condition"])


def test_the_member_read_role_is_one_named_role_per_account_for_lookups_only(org):
    readers = org["resource"]["aws_cloudformation_stack_set"]["readers"]
    # A role with a fixed name is global to its account: one stack per account (one Region),
    # deployed with the named-IAM capability, to every account of the units as they join.
    assert readers["capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert readers["permission_model"] == "SERVICE_MANAGED"
    assert first(readers["auto_deployment"])["enabled"] is True
    instances = org["resource"]["aws_cloudformation_stack_instances"]["readers"]
    assert instances["regions"] == ["${local.reader.region}"]
    assert "var.monitored_regions[0]" in org["locals"]["reader"]["region"]
    assert first(instances["deployment_targets"])["organizational_unit_ids"] == "${var.organizational_unit_ids}"
    assert readers["count"] == instances["count"] == "${var.read_role == null ? 0 : 1}"

    role = org["locals"]["read_role_template"]["Resources"]["ReadRole"]["Properties"]
    assert role["RoleName"] == "${local.reader.role_name}"
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "${local.reader.trusted_principal_arn}"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "${local.reader.external_id}"}}
    [policy] = role["Policies"]
    statements = {st["Action"]: st["Resource"] for st in policy["PolicyDocument"]["Statement"]}
    # HeadObject is authorised as s3:GetObject; ListBucket makes a missing object a 404.
    assert set(statements) == {"s3:GetObject", "s3:ListBucket"}
    assert "/*" in str(statements["s3:GetObject"]) and "/*" not in str(statements["s3:ListBucket"])
    assert all("var.bucket_patterns" in str(resources) for resources in statements.values())


def test_the_read_role_the_cli_prints_for_a_scope_is_one_org_source_accepts(tmp_path, org):
    created, _ = created_module_block(tmp_path, "org-source", org, "--bucket", "logs-*",
                                      "--organization", "o-a1b2c3d4e5")
    text = created["read_access_setup"]
    printed = parse(text[text.index("read_role = {"):text.index("}", text.index("read_role = {")) + 1])
    attributes = org["variable"]["read_role"]["type"]
    assert set(printed["read_role"]) <= set(re.findall(r"(\w+)\s*=", attributes)), attributes
    validations = " ".join(v["condition"] for v in org["variable"]["read_role"]["validation"])
    pattern = re.search(r'regex\("([^"]+)", var\.read_role\.external_id\)', validations).group(1)
    assert re.fullmatch(pattern, printed["read_role"]["external_id"]) and printed["read_role"]["external_id"] == created["external_id"]
    assert "receiver_role_arn" in printed["read_role"]["trusted_principal_arn"]

//! The customer's ready-to-paste setup, printed once with a new or rotated secret.

use relay_protocol::wire::{
    events_path, CloudflarePlan, BEARER_PREFIX, HEALTH_PATH, WORKER_DEAD_LETTER_QUEUE, WORKER_NAME,
    WORKER_QUEUE, WORKER_SECRET_NAME, WORKER_VAR_INTEGRATION_ID, WORKER_VAR_KEY_PREFIX,
    WORKER_VAR_KEY_SUFFIXES, WORKER_VAR_MAX_RETRY_DELAY, WORKER_VAR_RECEIVER_URL,
};
use relay_protocol::{Integration, Provider};
use std::fmt::Write;

/// The events URL the customer's side posts to.
pub(super) fn events_url(public_url: &str, integration_id: &str) -> String {
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        events_path(integration_id)
    )
}

/// Why the customer's side could not reach `base`, if it could not: Cloudflare's worker refuses a
/// receiver URL that is not https (`config_receiver_not_https`), EventBridge API destinations
/// take https endpoints only, and neither reaches this machine's loopback or a private network.
pub(super) fn unreachable_from_the_cloud(base: &str) -> Option<&'static str> {
    let Some(rest) = base.strip_prefix("https://") else {
        return Some("it is not https");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let private = host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
            }
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
        });
    private.then_some("it names this machine or a private network")
}

/// What the customer does with the secret on their side.
pub(super) fn instructions(integration: &Integration, secret: &str, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let warning = unreachable_from_the_cloud(base)
        .map(|why| {
            format!(
                "WARNING: the receiver URL {base} cannot be given to a customer: {why}. Their side\
                 \n(the worker, EventBridge) would refuse it or never reach it, and retry every event.\
                 \nSet RELAY_PUBLIC_URL (or --receiver-url) to the receiver's public https URL, and\
                 \nprint this again with `integrations rotate-secret ID --grace 0s`.\n\n"
            )
        })
        .unwrap_or_default();
    let text = match integration.provider {
        Provider::R2 => r2_instructions(integration, secret, base, Deployed::FromCheckout),
        Provider::S3 => {
            let (title, terraform, block) = match integration.scope {
                Some(_) => (
                    "Amazon S3, many buckets -> one central event bus -> Bucket Relay):\n\
                     \n  Send the S3 \"Object Created\" events (or the CloudTrail data events) of every bucket\
                     \n  in scope to one event bus, and from it to this API destination:",
                    "For an organization, with Terraform (terraform/modules/org-source), applied in the\
                     \n  management account;",
                    org_source_module(integration, public_url),
                ),
                None => (
                    "Amazon S3 -> EventBridge API destination):",
                    "Or with Terraform (terraform/modules/s3-source);",
                    s3_source_module(integration, public_url),
                ),
            };
            format!(
                "Customer setup ({title}\n\
                 \n  Connection (authorization type API key):\
                 \n    API key name:  Authorization\
                 \n    Value:         {BEARER_PREFIX}{secret}\n\
                 \n  API destination:\
                 \n    Endpoint:      {url}\
                 \n    HTTP method:   POST\n\
                 \n  {terraform} keep the secret out of version control:\n\
                 \n    export TF_VAR_bucket_relay_secret='{secret}'\n\
                 \n{block}",
                url = events_url(base, &integration.id),
                block = indent(&block, 4),
            )
        }
    };
    format!("{warning}{text}")
}

/// The R2 setup, in the order that loses nothing: the queues exist (with their retention) before
/// the worker consumes them, and the worker runs, with its secret, before the bucket starts
/// notifying. It is deployed before its secret is put (`secret put` on a worker that does not
/// exist yet stops to ask whether to create one): nothing reaches it until the rules exist.
/// Every command runs pasted into a non-interactive shell.
pub(super) fn r2_instructions(
    integration: &Integration,
    secret: &str,
    base: &str,
    from: Deployed,
) -> String {
    let (origin, vars_step) = match from {
        Deployed::FromCheckout => (
            "from a checkout of bucket-relay with Node.js (npx) and Rust (rustup target add \
             wasm32-unknown-unknown)",
            "In wrangler.toml, replace the [vars] section with",
        ),
        Deployed::FromPackage => (
            "from this folder, with Node.js (npx) alone: the worker is prebuilt",
            "wrangler.toml here is filled in for the integration already; its [vars] are",
        ),
    };
    let plan = integration.plan();
    let retention = plan.queue_retention_seconds();
    let keeping = match plan {
        CloudflarePlan::Paid => format!(
            "{} days (the most the Workers Paid plan allows; the 4-day\
             \n     default would delete messages before the worker's retries end)",
            retention / 86_400
        ),
        CloudflarePlan::Free => "24 hours (the most the Workers Free plan allows; the worker's\
             \n     retries wait an hour at most, so they all end inside it)"
            .to_owned(),
    };
    let mut text = format!(
        "Customer setup (Cloudflare R2 -> Bucket Relay worker, Workers {plan_name} plan), in this order,\n\
         {origin}:\n\
         \n  1. Create the queues, keeping messages {keeping}:\n\
         \n       npx wrangler queues create {WORKER_QUEUE} --message-retention-period-secs {retention}\
         \n       npx wrangler queues create {WORKER_DEAD_LETTER_QUEUE} --message-retention-period-secs {retention}\
         \n\n     and pause the dead-letter queue's delivery: the worker replays it once you resume it\
         \n     (`npx wrangler queues resume-delivery {WORKER_DEAD_LETTER_QUEUE}`, after fixing a cause):\n\
         \n       npx wrangler queues pause-delivery {WORKER_DEAD_LETTER_QUEUE}\n\
         \n  2. {vars_step}:\n\n{vars}\
         \n  3. Deploy the worker, so that it consumes the queue before the bucket notifies it (it\
         \n     prints the worker's URL, https://{WORKER_NAME}.<your-workers-subdomain>.workers.dev):\n\
         \n       npx wrangler deploy\n\
         \n  4. Store the secret in the deployed worker:\n\
         \n       printf '%s' '{secret}' | npx wrangler secret put {WORKER_SECRET_NAME}\n\
         \n  5. See the bucket's existing notification rules first: one that overlaps a rule below\
         \n     (same queue, prefix and suffix) makes its create step fail.\n\
         \n       npx wrangler r2 bucket notification list {bucket}\n\
         \n     Then send the bucket's new objects to the queue, filtered as the integration filters:\n\n",
        bucket = shell_quote(&integration.bucket),
        plan_name = match plan {
            CloudflarePlan::Paid => "Paid",
            CloudflarePlan::Free => "Free",
        },
        vars = indent(&wrangler_vars(integration, base), 7),
    );
    for rule in notification_rules(integration) {
        let _ = writeln!(text, "       {rule}");
    }
    let _ = write!(
        text,
        "\n  6. Check the worker (it shows the integration and the receiver, never the secret), at\
         \n     the URL step 3 printed:\n\
         \n       curl https://{WORKER_NAME}.<your-workers-subdomain>.workers.dev{HEALTH_PATH}\n"
    );
    text
}

/// Where the customer deploys the worker from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Deployed {
    /// A checkout of this repository: wrangler builds the worker (Rust) first.
    FromCheckout,
    /// The folder `worker package` wrote: the bundle is prebuilt, the vars filled in.
    FromPackage,
}

/// The `[vars]` section of the customer's wrangler.toml for this integration, as TOML.
pub(super) fn wrangler_vars(integration: &Integration, base: &str) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("strings serialize");
    let mut vars = format!(
        "[vars]\n{WORKER_VAR_RECEIVER_URL} = {}\n{WORKER_VAR_INTEGRATION_ID} = {}\n",
        quote(base.trim_end_matches('/')),
        quote(&integration.id)
    );
    if let Some(prefix) = &integration.prefix {
        let _ = writeln!(vars, "{WORKER_VAR_KEY_PREFIX} = {}", quote(prefix));
    }
    if !integration.suffixes.is_empty() {
        let _ = writeln!(
            vars,
            "{WORKER_VAR_KEY_SUFFIXES} = {}",
            quote(&integration.suffixes.join(","))
        );
    }
    let plan = integration.plan();
    if plan != CloudflarePlan::Paid {
        // The worker's default is the Paid plan's; any other plan's cap is set.
        let _ = writeln!(
            vars,
            "{WORKER_VAR_MAX_RETRY_DELAY} = {}",
            quote(&plan.max_retry_delay_seconds().to_string())
        );
    }
    vars
}

/// `wrangler r2 bucket notification create` lines with the integration's prefix and suffixes,
/// so that filtered objects never cost a queue operation. A rule takes one suffix, and
/// Cloudflare refuses rules that overlap, so there is one rule per suffix, and a suffix that
/// ends with another listed one is left to that one's rule (the receiver still filters exactly).
pub(super) fn notification_rules(integration: &Integration) -> Vec<String> {
    let base = format!(
        "npx wrangler r2 bucket notification create {} --event-type object-create --queue {WORKER_QUEUE}",
        shell_quote(&integration.bucket)
    );
    rule_filters(integration)
        .into_iter()
        .map(|rule| {
            // `--flag=value`: a value starting with `-` would otherwise read as flags.
            let prefix = rule
                .prefix
                .map(|prefix| format!(" --prefix={}", shell_quote(&prefix)))
                .unwrap_or_default();
            let suffix = rule
                .suffix
                .map(|suffix| format!(" --suffix={}", shell_quote(&suffix)))
                .unwrap_or_default();
            format!("{base}{prefix}{suffix}")
        })
        .collect()
}

/// One R2 notification rule's filters: the integration's prefix, and one of its suffixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleFilter {
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

/// The bucket's notification rules for the integration, filtered like it: one per suffix that
/// no other suffix already covers (two rules whose suffixes overlap are refused by R2), or one
/// unfiltered by suffix.
pub(crate) fn rule_filters(integration: &Integration) -> Vec<RuleFilter> {
    let prefix = integration.prefix.clone().filter(|p| !p.is_empty());
    let suffixes = &integration.suffixes;
    let mut covering: Vec<&String> = suffixes
        .iter()
        .filter(|suffix| {
            !suffixes
                .iter()
                .any(|other| other != *suffix && suffix.ends_with(other.as_str()))
        })
        .collect();
    covering.dedup();
    if covering.is_empty() {
        return vec![RuleFilter {
            prefix,
            suffix: None,
        }];
    }
    covering
        .into_iter()
        .map(|suffix| RuleFilter {
            prefix: prefix.clone(),
            suffix: Some(suffix.clone()),
        })
        .collect()
}

/// `text` as one POSIX shell word.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The customer's `module` block for `terraform/modules/s3-source`, with this integration's
/// bucket, URL and filters; the secret comes from the `bucket_relay_secret` variable.
pub(super) fn s3_source_module(integration: &Integration, public_url: &str) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("strings serialize");
    let mut block = String::from(
        "variable \"bucket_relay_secret\" {\n  type      = string\n  sensitive = true\n}\n\n",
    );
    block.push_str("module \"bucket_relay_source\" {\n");
    block.push_str(
        "  source              = \"<path to bucket-relay>/terraform/modules/s3-source\"\n",
    );
    block.push_str(&format!(
        "  bucket_name         = {}\n",
        quote(&integration.bucket)
    ));
    let url = events_url(public_url, &integration.id);
    block.push_str(&format!("  events_url          = {}\n", quote(&url)));
    block.push_str("  event_source_secret = var.bucket_relay_secret\n");
    if let Some(prefix) = &integration.prefix {
        block.push_str(&format!("  prefix              = {}\n", quote(prefix)));
    }
    if !integration.suffixes.is_empty() {
        let list: Vec<String> = integration.suffixes.iter().map(|s| quote(s)).collect();
        block.push_str(&format!("  suffixes            = [{}]\n", list.join(", ")));
    }
    block.push_str("}\n");
    block
}

/// The `org-source` module block for a scoped integration, its values filled in where the
/// integration knows them.
pub(super) fn org_source_module(integration: &Integration, public_url: &str) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("strings serialize");
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let scope = integration.scope.clone().unwrap_or_default();
    let organization = scope
        .organization
        .as_deref()
        .unwrap_or("o-<your organization id>");
    let region = integration.region.as_deref().unwrap_or("<region>");
    let url = events_url(public_url, &integration.id);
    format!(
        "variable \"bucket_relay_secret\" {{\n  type      = string\n  sensitive = true\n}}\n\n\
         module \"bucket_relay_org\" {{\n\
         \x20 source                  = \"<path to bucket-relay>/terraform/modules/org-source\"\n\
         \x20 organization_id         = {organization}\n\
         \x20 organizational_unit_ids = [\"r-<root id>\"] # or the units whose accounts hold the buckets\n\
         \x20 monitored_regions       = [{region}]\n\
         \x20 bucket_patterns         = {patterns}\n\
         \x20 events_url              = {url}\n\
         \x20 event_source_secret     = var.bucket_relay_secret\n\
         }}\n",
        organization = quote(organization),
        region = quote(region),
        patterns = list(&scope.buckets),
        url = quote(&url),
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|line| match line {
            "" => "\n".to_owned(),
            _ => format!("{pad}{line}\n"),
        })
        .collect()
}

/// The `read_role` argument of s3-source and org-source: the role trusts the receiver stack's
/// role named by `principal_output`, with the integration's external id.
fn read_role_block(principal_output: &str, external_id: &str) -> String {
    format!(
        "    read_role = {{\n      trusted_principal_arn = \"<the receiver stack's {principal_output} \
         output>\"\n      external_id           = \"{external_id}\"\n    }}\n"
    )
}

/// The customer's side of read access (poll mode and backfill): for S3 the role to create, with
/// the external id it must require; for R2 the token to create.
pub(super) fn read_access(integration: &Integration, external_id: &str) -> String {
    let id = &integration.id;
    let bucket = &integration.bucket;
    match integration.provider {
        Provider::S3 if integration.scope.is_some() => format!(
            "Read access for object lookups (Amazon S3, many buckets): a role of one name in every\n\
             account, which the receiver assumes with this external id to ask the bucket (HeadObject)\n\
             for the ETag a CloudTrail event in an unversioned bucket leaves out, so the object is one\n\
             job however it arrives:\n\
             \n  external id:  {external_id}\n\
             \n  With Terraform (terraform/modules/org-source), add to the module block:\n\
             \n{block}\
             \n  and give the role's name to the receiver:\n\
             \n    bucket-relay integrations set-source {id} --role-name bucket-relay-read\n\
             \n  By hand: in each account, a role trusting the receiver's role on the condition\
             \n  sts:ExternalId = {external_id}, allowed s3:GetObject on arn:aws:s3:::<bucket>/* (HeadObject)\
             \n  and s3:ListBucket on arn:aws:s3:::<bucket> (so a deleted object answers 404, not 403).\n",
            block = read_role_block("receiver_role_arn", external_id),
        ),
        Provider::S3 => format!(
            "Read access for poll mode and backfill (Amazon S3): a role in the bucket's account\n\
             that the receiver's poller may assume with this external id:\n\
             \n  external id:  {external_id}\n\
             \n  With Terraform (terraform/modules/s3-source), add to the module block:\n\
             \n{block}\
             \n  and give its `read_role_arn` output to the receiver:\n\
             \n    bucket-relay integrations set-source {id} --role-arn <read_role_arn>\n\
             \n  By hand: the role's trust policy allows sts:AssumeRole to the receiver's poller role on\
             \n  the condition sts:ExternalId = {external_id}; its policy allows s3:ListBucket and\
             \n  s3:ListBucketVersions on arn:aws:s3:::{bucket}{prefix_note}. GetObject alone is not enough.\n",
            prefix_note = integration
                .prefix
                .as_deref()
                .map(|p| format!(" (condition s3:prefix = \"{p}*\")"))
                .unwrap_or_default(),
            block = read_role_block("poller_role_arn", external_id),
        ),
        Provider::R2 => format!(
            "Read access for poll mode and backfill (Cloudflare R2): an R2 API token.\n\
             \n  1. Cloudflare dashboard > R2 > Manage API tokens > Create API token:\
             \n     permission \"Object Read only\", applied to bucket {bucket} only.\
             \n  2. Give its S3 credentials to the receiver (the secret is sealed at rest and never\
             \n     shown again):\n\
             \n       export RELAY_R2_SECRET_ACCESS_KEY='<Secret Access Key>'\
             \n       bucket-relay integrations set-source {id} --r2-access-key-id <Access Key ID>\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use relay_protocol::integration::NewIntegration;

    fn integration(prefix: Option<&str>, suffixes: &[&str]) -> Integration {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let fields = NewIntegration {
            prefix: prefix.map(str::to_owned),
            suffixes: suffixes.iter().map(|s| (*s).to_owned()).collect(),
            ..NewIntegration::new(Provider::R2, "uploads")
        };
        fields.build("abc", at).unwrap()
    }

    #[test]
    fn notification_rules_carry_the_filters_one_suffix_each_without_overlap() {
        let rules = notification_rules(&integration(
            Some("in/my docs/"),
            &[".pdf", ".png", "x.pdf"],
        ));
        assert_eq!(
            rules,
            [
                "npx wrangler r2 bucket notification create uploads --event-type object-create \
                 --queue r2-events --prefix='in/my docs/' --suffix=.pdf",
                "npx wrangler r2 bucket notification create uploads --event-type object-create \
                 --queue r2-events --prefix='in/my docs/' --suffix=.png",
            ]
        );
        // A value starting with `-` stays the flag's value, not more flags.
        let dashed = notification_rules(&integration(Some("-in/"), &["-final.pdf"]));
        assert_eq!(
            dashed,
            [
                "npx wrangler r2 bucket notification create uploads --event-type object-create \
              --queue r2-events --prefix=-in/ --suffix=-final.pdf"
            ]
        );
        let unfiltered = notification_rules(&integration(None, &[]));
        assert_eq!(
            unfiltered,
            ["npx wrangler r2 bucket notification create uploads --event-type object-create --queue r2-events"]
        );
    }

    #[test]
    fn shell_quoting_keeps_odd_keys_one_word() {
        assert_eq!(shell_quote("in/"), "in/");
        assert_eq!(shell_quote("it's here/"), r"'it'\''s here/'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_r2_setup_creates_the_queues_before_deploying_and_notifies_last() {
        let text = instructions(
            &integration(Some("in/"), &[".pdf"]),
            "whsec_x",
            "https://r.example/",
        );
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(
            at("queues create r2-events --message-retention-period-secs 1209600") < at("[vars]")
        );
        assert!(
            at("queues create r2-events-dlq --message-retention-period-secs 1209600")
                < at("[vars]")
        );
        assert!(
            at("queues create r2-events-dlq") < at("queues pause-delivery r2-events-dlq")
                && at("queues pause-delivery r2-events-dlq") < at("wrangler deploy"),
            "the dead letters are not replayed until someone resumes their delivery"
        );
        assert!(at("[vars]") < at("wrangler deploy"));
        // `secret put` on a worker that does not exist stops to ask; the value comes on stdin.
        assert!(at("wrangler deploy") < at("secret put EVENT_SOURCE_SECRET"));
        assert!(
            text.contains("printf '%s' 'whsec_x' | npx wrangler secret put EVENT_SOURCE_SECRET")
        );
        assert!(at("secret put") < at("notification list uploads"));
        assert!(at("notification list uploads") < at("notification create uploads"));
        assert!(at("notification create") < at("/healthz"));
        assert!(text.contains("KEY_PREFIX = \"in/\"") && text.contains("KEY_SUFFIXES = \".pdf\""));
        assert!(text.contains("RECEIVER_URL = \"https://r.example\""));
        assert!(!text.contains("WARNING"));
    }

    #[test]
    fn on_the_free_plan_the_queues_keep_a_day_and_the_worker_retries_within_it() {
        let mut free = integration(None, &[".pdf"]);
        free.cloudflare_plan = Some(CloudflarePlan::Free);
        let text = instructions(&free, "whsec_x", "https://r.example/");
        assert!(text.contains("Workers Free plan"));
        assert!(text.contains("queues create r2-events --message-retention-period-secs 86400"));
        assert!(text.contains("queues create r2-events-dlq --message-retention-period-secs 86400"));
        assert!(text.contains("MAX_RETRY_DELAY_SECONDS = \"3600\""));
        assert!(!text.contains("1209600"));
        let paid = instructions(&integration(None, &[]), "whsec_x", "https://r.example/");
        assert!(paid.contains("Workers Paid plan") && paid.contains("1209600"));
        assert!(
            !paid.contains("MAX_RETRY_DELAY_SECONDS"),
            "the worker's default is Paid's"
        );
    }

    #[test]
    fn a_receiver_url_the_cloud_cannot_reach_is_flagged_before_the_setup() {
        for url in [
            "http://127.0.0.1:8787",
            "http://relay.example.com",
            "https://localhost:8787",
            "https://10.1.2.3",
            "https://192.168.0.5/x",
            "https://[::1]:8787",
        ] {
            let text = instructions(&integration(None, &[]), "whsec_x", url);
            assert!(
                text.starts_with("WARNING: the receiver URL"),
                "{url}: {text}"
            );
        }
        for url in ["https://relay.example.com", "https://203.0.113.7:8443/"] {
            assert_eq!(unreachable_from_the_cloud(url), None, "{url}");
        }
    }
}

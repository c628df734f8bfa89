//! The customer's ready-to-paste setup, printed once with a new or rotated secret.

use relay_protocol::wire::{
    events_path, BEARER_PREFIX, WORKER_SECRET_NAME, WORKER_VAR_INTEGRATION_ID,
    WORKER_VAR_RECEIVER_URL,
};
use relay_protocol::{Integration, Provider};

/// The events URL the customer's side posts to.
pub fn events_url(public_url: &str, integration_id: &str) -> String {
    format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        events_path(integration_id)
    )
}

/// What the customer does with the secret on their side.
pub fn instructions(integration: &Integration, secret: &str, public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    match integration.provider {
        Provider::R2 => format!(
            "Customer setup (Cloudflare R2 -> Bucket Relay worker):\n\
             \n  1. In the worker's wrangler.toml:\n\
             \n       [vars]\
             \n       {WORKER_VAR_RECEIVER_URL} = \"{base}\"\
             \n       {WORKER_VAR_INTEGRATION_ID} = \"{id}\"\n\
             \n  2. Store the secret in the worker (paste it when asked):\n\
             \n       npx wrangler secret put {WORKER_SECRET_NAME}\n\
             \n     value: {secret}\n",
            id = integration.id,
        ),
        Provider::S3 => format!(
            "Customer setup (Amazon S3 -> EventBridge API destination):\n\
             \n  Connection (authorization type API key):\
             \n    API key name:  Authorization\
             \n    Value:         {BEARER_PREFIX}{secret}\n\
             \n  API destination:\
             \n    Endpoint:      {url}\
             \n    HTTP method:   POST\n\
             \n  Or with Terraform (terraform/modules/s3-source); keep the secret out of version control:\n\
             \n    export TF_VAR_bucket_relay_secret='{secret}'\n\
             \n{block}",
            url = events_url(base, &integration.id),
            block = indent(&s3_source_module(integration, public_url), 4),
        ),
    }
}

/// The customer's `module` block for `terraform/modules/s3-source`, with this integration's
/// bucket, URL and filters; the secret comes from the `bucket_relay_secret` variable.
pub fn s3_source_module(integration: &Integration, public_url: &str) -> String {
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

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|line| match line {
            "" => "\n".to_owned(),
            _ => format!("{pad}{line}\n"),
        })
        .collect()
}

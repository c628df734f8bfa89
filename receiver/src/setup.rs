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
             \n    HTTP method:   POST\n",
            url = events_url(base, &integration.id),
        ),
    }
}

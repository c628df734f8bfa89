//! The floor `scripts/lambda-start` measures the receiver against: the smallest function
//! `lambda_http` runs, answering every request `ok`, built with the same profile. Whatever it
//! takes to start and answer, the receiver cannot take less.

use lambda_http::{service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_request: Request| async {
        Ok::<_, Error>(Response::new(Body::Text("ok".to_owned())))
    }))
    .await
}

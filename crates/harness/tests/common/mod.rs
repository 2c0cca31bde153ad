//! Helpers shared by the stand-in tests: plain `reqwest` requests, no upramp client code.

#![allow(clippy::unwrap_used, dead_code)]

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use upramp_harness::{Flavor, StandIn, StandInConfig};

pub const ASYNC_UA: &str = "upramp/0.1.0 (async)";
pub const SYNC_UA: &str = "upramp/0.1.0 (sync)";

pub async fn start(flavor: Flavor) -> StandIn {
    StandIn::start(StandInConfig::new(flavor)).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub fn form(filename: &str, purpose: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("purpose", purpose.to_owned())
        .part("file", Part::bytes(bytes).file_name(filename.to_owned()))
}

pub async fn upload_as(
    stand_in: &StandIn,
    user_agent: &str,
    filename: &str,
    purpose: &str,
    bytes: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    client()
        .post(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .header("User-Agent", user_agent)
        .multipart(form(filename, purpose, bytes))
        .send()
        .await
}

pub async fn upload(
    stand_in: &StandIn,
    filename: &str,
    purpose: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    upload_as(stand_in, "plain-reqwest", filename, purpose, bytes)
        .await
        .unwrap()
}

pub async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Replace the values that change from run to run (ids, timestamps, dates) with placeholders.
pub fn redact(mut value: Value) -> Value {
    redact_in_place(&mut value);
    value
}

fn redact_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match key.as_str() {
                    "id" => *inner = Value::String("[id]".to_owned()),
                    "created_at" => *inner = Value::String("[created_at]".to_owned()),
                    _ => redact_in_place(inner),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        _ => {}
    }
}

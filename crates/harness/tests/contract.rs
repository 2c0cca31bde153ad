//! The stand-ins answer plain `reqwest` requests exactly as `docs/providers.md` documents.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};

use common::{client, redact, start, status_and_json, upload};
use sha2::{Digest, Sha256};
use upramp_harness::{Flavor, StandIn, StandInConfig};

#[tokio::test]
async fn kimi_upload_list_retrieve_content_delete() {
    let stand_in = start(Flavor::Kimi).await;
    let base = stand_in.base_url();
    let body = b"hello kimi\nsecond line\n".to_vec();
    let (status, uploaded) =
        status_and_json(upload(&stand_in, "notes.txt", "file-extract", body.clone()).await).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("kimi_upload", redact(uploaded.clone()));
    let id = uploaded["id"].as_str().unwrap().to_owned();

    let stored = stand_in.stored_files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].bytes, body.len() as u64);
    assert_eq!(stored[0].sha256, hex::encode(Sha256::digest(&body)));
    assert_eq!(
        stored[0].created_at,
        uploaded["created_at"].as_i64().unwrap()
    );

    let http = client();
    let key = stand_in.api_key().to_owned();
    let (status, listed) = status_and_json(
        http.get(format!("{base}/files"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("kimi_list", redact(listed));

    let (status, retrieved) = status_and_json(
        http.get(format!("{base}/files/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &retrieved), (200, &uploaded));

    let content = http
        .get(format!("{base}/files/{id}/content"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(
        content.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(content.text().await.unwrap(), "hello kimi\nsecond line\n");

    let (status, deleted) = status_and_json(
        http.delete(format!("{base}/files/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({ "id": id, "object": "file", "deleted": true })
    );
    assert!(stand_in.stored_files().is_empty());

    let (status, missing) = status_and_json(
        http.get(format!("{base}/files/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "resource_not_found_error");
    let stats = stand_in.stats();
    assert_eq!(stats.uploads_accepted, 1);
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.requests_by_route["retrieve"], 2);
}

#[tokio::test]
async fn glm_upload_list_pages_content_delete() {
    let stand_in = start(Flavor::Glm).await;
    let base = stand_in.base_url();
    assert!(base.ends_with("/api/paas/v4"));
    let (status, uploaded) = status_and_json(
        upload(
            &stand_in,
            "report.csv",
            "file-extract",
            b"a,b\n1,2\n".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("glm_upload", redact(uploaded.clone()));
    let first_id = uploaded["id"].as_str().unwrap().to_owned();
    for index in 0..4 {
        let response = upload(
            &stand_in,
            &format!("batch-{index}.jsonl"),
            "batch",
            b"{}\n".to_vec(),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let http = client();
    let key = stand_in.api_key().to_owned();
    let get = |query: &str| {
        http.get(format!("{base}/files{query}"))
            .bearer_auth(&key)
            .send()
    };

    let (_, page) = status_and_json(get("?purpose=batch&order=asc&limit=3").await.unwrap()).await;
    insta::assert_json_snapshot!("glm_list_page", redact(page.clone()));
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch-0.jsonl", "batch-1.jsonl", "batch-2.jsonl"]);
    assert_eq!(page["has_more"], true);
    let last = page["data"][2]["id"].as_str().unwrap();
    let (_, next) = status_and_json(
        get(&format!("?purpose=batch&order=asc&limit=3&after={last}"))
            .await
            .unwrap(),
    )
    .await;
    let names: Vec<&str> = next["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch-3.jsonl"]);
    assert_eq!(next["has_more"], false);

    let (_, newest) = status_and_json(get("?limit=1").await.unwrap()).await;
    assert_eq!(newest["data"][0]["filename"], "batch-3.jsonl");
    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?order=sideways",
        "?after=nope",
    ] {
        let (status, body) = status_and_json(get(bad).await.unwrap()).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "1214", "{bad}");
    }

    let (status, extracted) =
        status_and_json(get(&format!("/{first_id}/content")).await.unwrap()).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("glm_file_extract_content", extracted);
    let (_, files) = status_and_json(get("?purpose=batch&limit=1").await.unwrap()).await;
    let batch_id = files["data"][0]["id"].as_str().unwrap();
    let raw = get(&format!("/{batch_id}/content")).await.unwrap();
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(raw.bytes().await.unwrap().as_ref(), b"{}\n");

    let (status, deleted) = status_and_json(
        http.delete(format!("{base}/files/{first_id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({ "id": first_id, "object": "file", "deleted": true })
    );
    assert_eq!(stand_in.stored_files().len(), 4);
}

#[tokio::test]
async fn missing_or_wrong_keys_get_the_providers_401_bodies() {
    for flavor in [Flavor::Kimi, Flavor::Glm] {
        let stand_in = start(flavor).await;
        let url = format!("{}/files", stand_in.base_url());
        let http = client();
        let (status, missing) = status_and_json(http.get(&url).send().await.unwrap()).await;
        assert_eq!(status, 401);
        let (status, wrong) = status_and_json(
            http.post(&url)
                .bearer_auth("sk-wrong")
                .multipart(common::form("a.txt", "file-extract", b"x".to_vec()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401);
        insta::assert_json_snapshot!(format!("{flavor}_auth_errors"), (missing, wrong));
        assert!(stand_in.stored_files().is_empty());
        assert_eq!(stand_in.stats().uploads_rejected, 1);
    }
}

#[tokio::test]
async fn kimi_rejects_empty_files_unknown_purposes_missing_fields_and_the_1001st_file() {
    let stand_in = StandIn::start(StandInConfig::new(Flavor::Kimi).with_max_files(2))
        .await
        .unwrap();
    let mut errors = Vec::new();
    let (status, body) =
        status_and_json(upload(&stand_in, "empty.txt", "file-extract", Vec::new()).await).await;
    errors.push((status, body));
    let (status, body) =
        status_and_json(upload(&stand_in, "a.txt", "fine-tune", b"x".to_vec()).await).await;
    errors.push((status, body));
    let only_file = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
    );
    let response = client()
        .post(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .multipart(only_file)
        .send()
        .await
        .unwrap();
    errors.push(status_and_json(response).await);
    let only_purpose = reqwest::multipart::Form::new().text("purpose", "file-extract");
    let response = client()
        .post(format!("{}/files", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .multipart(only_purpose)
        .send()
        .await
        .unwrap();
    errors.push(status_and_json(response).await);
    for name in ["one.txt", "two.txt"] {
        assert_eq!(
            upload(&stand_in, name, "file-extract", b"x".to_vec())
                .await
                .status(),
            200
        );
    }
    errors.push(
        status_and_json(upload(&stand_in, "three.txt", "file-extract", b"x".to_vec()).await).await,
    );
    insta::assert_json_snapshot!("kimi_rejections", errors);
    assert_eq!(stand_in.stored_files().len(), 2);
    assert_eq!(stand_in.stats().uploads_rejected, 5);
}

#[tokio::test]
async fn glm_enforces_purpose_limits_and_names() {
    let stand_in = start(Flavor::Glm).await;
    let five_mib_and_one = vec![0u8; 5 * 1024 * 1024 + 1];
    let (status, image) = status_and_json(
        upload(
            &stand_in,
            "scan.png",
            "file-extract",
            five_mib_and_one.clone(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    // The same bytes are fine as a PDF (50 MB limit) and as a batch file.
    assert_eq!(
        upload(&stand_in, "scan.pdf", "file-extract", five_mib_and_one)
            .await
            .status(),
        200
    );
    let (status, purpose) =
        status_and_json(upload(&stand_in, "a.txt", "fine-tune", b"x".to_vec()).await).await;
    assert_eq!(status, 400);
    // GLM documents no zero-byte rule: an empty batch file is stored.
    assert_eq!(
        upload(&stand_in, "empty.jsonl", "batch", Vec::new())
            .await
            .status(),
        200
    );
    insta::assert_json_snapshot!("glm_rejections", (image, purpose));
}

/// Send only headers declaring a 200 MB body and read the answer: the stand-in must refuse at once,
/// without waiting for a byte of the body.
fn oversized_declared_length(stand_in: &StandIn) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(stand_in.addr()).unwrap();
    // "http://127.0.0.1:PORT/v1" -> "/v1/files"
    let base_url = stand_in.base_url();
    let path = format!("/{}/files", base_url.splitn(4, '/').nth(3).unwrap());
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {}\r\n\r\n",
        stand_in.api_key(),
        200u64 * 1024 * 1024
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_declared_length_over_100_mb_is_refused_before_the_body() {
    let kimi = start(Flavor::Kimi).await;
    let glm = start(Flavor::Glm).await;
    let (kimi_answer, glm_answer) = tokio::task::spawn_blocking(move || {
        let answers = (
            oversized_declared_length(&kimi),
            oversized_declared_length(&glm),
        );
        drop((kimi, glm));
        answers
    })
    .await
    .unwrap();
    assert_eq!(kimi_answer.0, "HTTP/1.1 400 Bad Request");
    assert_eq!(
        kimi_answer.1,
        r#"{"error":{"message":"File size is too large, max file size is 100MB","type":"invalid_request_error"}}"#
    );
    assert!(
        glm_answer.0.starts_with("HTTP/1.1 435 "),
        "{}",
        glm_answer.0
    );
    assert_eq!(
        glm_answer.1,
        r#"{"error":{"code":"1210","message":"File size exceeds the 100MB limit"}}"#
    );
}

#[tokio::test]
async fn unknown_routes_and_non_multipart_uploads_are_errors() {
    let stand_in = start(Flavor::Kimi).await;
    let http = client();
    let response = http
        .get(format!("{}/models", stand_in.base_url()))
        .bearer_auth(stand_in.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, body) = status_and_json(
        http.post(format!("{}/files", stand_in.base_url()))
            .bearer_auth(stand_in.api_key())
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// Upload a minimal GLM batch file named `name`.
async fn upload_batch(stand_in: &StandIn, name: &str) -> reqwest::Response {
    upload(stand_in, name, "batch", b"{}".to_vec()).await
}

#[tokio::test]
async fn ids_are_unique_and_follow_the_seed() {
    async fn ids(seed: u64) -> Vec<String> {
        let stand_in = StandIn::start(StandInConfig::new(Flavor::Glm).with_seed(seed))
            .await
            .unwrap();
        for index in 0..5 {
            upload_batch(&stand_in, &format!("{index}.jsonl")).await;
        }
        stand_in
            .stored_files()
            .into_iter()
            .map(|file| file.id)
            .collect()
    }
    let first = ids(42).await;
    assert_eq!(first, ids(42).await);
    assert_ne!(first, ids(43).await);
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
}

#[tokio::test]
async fn content_keeps_the_configured_head_of_each_file() {
    let body: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (config, kept) in [
        (
            StandInConfig::new(Flavor::Glm),
            upramp_harness::DEFAULT_CONTENT_BYTES,
        ),
        (StandInConfig::new(Flavor::Glm).with_content_bytes(5), 5),
    ] {
        let stand_in = StandIn::start(config).await.unwrap();
        let (status, uploaded) =
            status_and_json(upload(&stand_in, "big.jsonl", "batch", body.clone()).await).await;
        assert_eq!(status, 200);
        let id = uploaded["id"].as_str().unwrap();
        let content = client()
            .get(format!("{}/files/{id}/content", stand_in.base_url()))
            .bearer_auth(stand_in.api_key())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(content.as_ref(), &body[..kept]);
        // The hash and size cover the whole file, whatever is kept.
        let stored = stand_in.stored_files();
        assert_eq!(stored[0].bytes, body.len() as u64);
        assert_eq!(stored[0].sha256, hex::encode(Sha256::digest(&body)));
        stand_in.shutdown().await;
    }
}

#[tokio::test]
async fn a_configured_size_cap_replaces_every_documented_limit() {
    // GLM's code-interpreter limit is 20 MB; a cap of 1,000 bytes replaces it (and batch's 100 MB), on
    // the streamed count and on the declared length alike.
    for flavor in [Flavor::Kimi, Flavor::Glm] {
        let purpose = if flavor == Flavor::Kimi {
            "file-extract"
        } else {
            "code-interpreter"
        };
        let stand_in = StandIn::start(StandInConfig::new(flavor).with_max_file_bytes(1_000))
            .await
            .unwrap();
        let (fits, _) =
            status_and_json(upload(&stand_in, "fits.txt", purpose, vec![b'x'; 1_000]).await).await;
        assert_eq!(fits, 200, "{flavor:?}");
        let (over, body) =
            status_and_json(upload(&stand_in, "over.txt", purpose, vec![b'x'; 1_001]).await).await;
        assert_ne!(over, 200, "{flavor:?}: {body}");
        assert!(
            body.to_string().contains("1000 bytes"),
            "{flavor:?}: {body}"
        );
        let (declared_over, _) =
            status_and_json(upload(&stand_in, "far-over.txt", purpose, vec![b'x'; 200_000]).await)
                .await;
        assert_ne!(declared_over, 200, "{flavor:?}");
        assert_eq!(
            stand_in.stored_files().len(),
            1,
            "{flavor:?}: only the file that fits is stored"
        );
        stand_in.shutdown().await;
    }
}

#[tokio::test]
async fn a_configured_size_cap_above_the_documented_limit_accepts_larger_files() {
    // GLM documents 20 MB for code-interpreter; with a 25 MiB cap a 21 MiB file is stored whole.
    let cap = 25 * 1024 * 1024;
    let stand_in = StandIn::start(StandInConfig::new(Flavor::Glm).with_max_file_bytes(cap))
        .await
        .unwrap();
    let body = vec![b'y'; 21 * 1024 * 1024];
    let (status, answer) =
        status_and_json(upload(&stand_in, "big.py", "code-interpreter", body.clone()).await).await;
    assert_eq!(status, 200, "{answer}");
    let stored = stand_in.stored_files();
    assert_eq!(stored[0].bytes, body.len() as u64);
    assert_eq!(stored[0].sha256, hex::encode(Sha256::digest(&body)));
    stand_in.shutdown().await;
}

#[tokio::test]
async fn stored_files_since_returns_each_file_once_across_deletes() {
    let stand_in = start(Flavor::Glm).await;
    for index in 0..3 {
        upload_batch(&stand_in, &format!("{index}.jsonl")).await;
    }
    let (first, cursor) = stand_in.stored_files_since(0);
    assert_eq!(first.len(), 3);
    assert_eq!(stand_in.stored_files_since(cursor).0, Vec::new());

    let deleted = client()
        .delete(format!("{}/files/{}", stand_in.base_url(), first[1].id))
        .bearer_auth(stand_in.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    upload_batch(&stand_in, "3.jsonl").await;
    let (fresh, next) = stand_in.stored_files_since(cursor);
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].filename, "3.jsonl");
    assert!(next > cursor);
    // From the start: the survivors and the new file, in upload order.
    let names: Vec<String> = stand_in
        .stored_files_since(0)
        .0
        .into_iter()
        .map(|file| file.filename)
        .collect();
    assert_eq!(names, ["0.jsonl", "2.jsonl", "3.jsonl"]);
}

/// The OpenAI SDKs' pager asks again with `after=<last id>` until `has_more` is false (or, when it
/// is absent, until a page is empty): the Kimi stand-in must let that end.
#[tokio::test]
async fn kimi_list_honours_after_and_limit_so_a_cursor_pager_ends() {
    let stand_in = start(Flavor::Kimi).await;
    let base = stand_in.base_url();
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, uploaded) = status_and_json(
            upload(
                &stand_in,
                &format!("f{n}.txt"),
                "file-extract",
                b"x".to_vec(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
        ids.push(uploaded["id"].as_str().unwrap().to_owned());
    }
    let http = client();
    let page = |query: String| {
        let request = http
            .get(format!("{base}/files{query}"))
            .bearer_auth(stand_in.api_key());
        async move { status_and_json(request.send().await.unwrap()).await }
    };
    let (status, all) = page(String::new()).await;
    assert_eq!(status, 200);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["data"].as_array().unwrap().len(), 5);

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    for _ in 0..10 {
        let (status, listed) = page(query.clone()).await;
        assert_eq!(status, 200);
        let data = listed["data"].as_array().unwrap();
        seen.extend(data.iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        let has_more = listed["has_more"].as_bool().expect("has_more is sent");
        if !has_more || data.is_empty() {
            break;
        }
        query = format!("?limit=2&after={}", seen.last().unwrap());
    }
    assert_eq!(seen, ids);
    let (_, unknown) = page("?after=no-such-file".to_owned()).await;
    assert_eq!(unknown["data"].as_array().unwrap().len(), 0);
    assert_eq!(unknown["has_more"], false);
}

//! Pure wire-format tests: the multipart request shape, parsed errors for every documented error
//! body, both readings of success bodies, and the length invariant of the multipart builder.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use upramp_providers::{
    encode_filename, parse_deleted, parse_error, parse_file_list, parse_file_object, Boundary,
    MultipartLayout, ProviderKind, Transport,
};

fn now() -> SystemTime {
    httpdate::parse_http_date("Tue, 15 Apr 2025 10:00:00 GMT").unwrap()
}

#[test]
fn multipart_request_shape() {
    let boundary = Boundary::new("upramp-fixed-boundary").unwrap();
    let layout = MultipartLayout::new(
        boundary,
        "quarterly \"report\"\r\n报告.pdf",
        "file-extract",
        11,
    )
    .unwrap();
    let body = layout.assemble(b"hello world");
    assert_eq!(body.len() as u64, layout.content_length());
    let shown = format!(
        "Content-Type: {}\nContent-Length: {}\nUser-Agent (async): {}\nUser-Agent (sync): {}\n\n{}",
        layout.content_type(),
        layout.content_length(),
        Transport::Async.user_agent(),
        Transport::Blocking.user_agent(),
        String::from_utf8(body).unwrap().replace("\r\n", "\\r\\n\n"),
    );
    insta::assert_snapshot!(shown);
}

struct Case {
    name: &'static str,
    provider: ProviderKind,
    status: u16,
    retry_after: Option<&'static str>,
    body: &'static str,
}

const fn case(name: &'static str, provider: ProviderKind, status: u16, body: &'static str) -> Case {
    Case {
        name,
        provider,
        status,
        retry_after: None,
        body,
    }
}

#[test]
fn parsed_errors() {
    use ProviderKind::{Glm, Kimi, OpenAi};
    let cases = [
        case(
            "kimi 400 too large",
            Kimi,
            400,
            r#"{"error":{"type":"invalid_request_error","message":"File size is too large, max file size is 100MB, please confirm and re-upload the file"}}"#,
        ),
        case(
            "kimi 400 zero",
            Kimi,
            400,
            r#"{"error":{"type":"invalid_request_error","message":"File size is zero, please confirm and re-upload the file"}}"#,
        ),
        case(
            "kimi 400 file count",
            Kimi,
            400,
            r#"{"error":{"type":"invalid_request_error","message":"Too many files uploaded, the limit is 1000"}}"#,
        ),
        case(
            "kimi 401 invalid auth",
            Kimi,
            401,
            r#"{"error":{"type":"invalid_authentication_error","message":"Invalid Authentication"}}"#,
        ),
        case(
            "kimi 401 incorrect key",
            Kimi,
            401,
            r#"{"error":{"type":"incorrect_api_key_error","message":"Incorrect API key provided"}}"#,
        ),
        Case {
            retry_after: Some("3"),
            ..case(
                "kimi 429 rate",
                Kimi,
                429,
                r#"{"error":{"type":"rate_limit_reached_error","message":"Your account org-1 request reached max request: 3, please try again after 1 seconds"}}"#,
            )
        },
        case(
            "kimi 429 quota",
            Kimi,
            429,
            r#"{"error":{"type":"exceeded_current_quota_error","message":"Your account org-1 is suspended, please check your plan and billing details"}}"#,
        ),
        case(
            "openai 429 insufficient_quota",
            OpenAi,
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        ),
        case(
            "glm 1000",
            Glm,
            401,
            r#"{"error":{"code":"1000","message":"身份验证失败。"}}"#,
        ),
        case(
            "glm 1001",
            Glm,
            401,
            r#"{"error":{"code":"1001","message":"Header中未收到Authentication参数"}}"#,
        ),
        case(
            "glm 1002",
            Glm,
            401,
            r#"{"error":{"code":"1002","message":"Authorization Token非法"}}"#,
        ),
        case(
            "glm 1003",
            Glm,
            401,
            r#"{"error":{"code":"1003","message":"Authorization Token已过期"}}"#,
        ),
        case(
            "glm 1004",
            Glm,
            401,
            r#"{"error":{"code":"1004","message":"Authorization Token验证失败"}}"#,
        ),
        case(
            "glm 1113 arrears on 429",
            Glm,
            429,
            r#"{"error":{"code":"1113","message":"您的账户已欠费，请充值后重试。"}}"#,
        ),
        case(
            "glm 1210",
            Glm,
            400,
            r#"{"error":{"code":"1210","message":"API 调用参数有误，请检查文档。"}}"#,
        ),
        case(
            "glm 1214",
            Glm,
            400,
            r#"{"error":{"code":"1214","message":"purpose 参数非法"}}"#,
        ),
        Case {
            retry_after: Some("Tue, 15 Apr 2025 10:00:05 GMT"),
            ..case(
                "glm 1302",
                Glm,
                429,
                r#"{"error":{"code":"1302","message":"您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"}}"#,
            )
        },
        case(
            "glm 1305",
            Glm,
            429,
            r#"{"error":{"code":"1305","message":"当前API请求过多，请稍后重试。"}}"#,
        ),
        case(
            "glm 434",
            Glm,
            434,
            r#"{"error":{"code":"434","message":"无权访问文件API"}}"#,
        ),
        case(
            "glm 435",
            Glm,
            435,
            r#"{"error":{"code":"435","message":"文件大小超过100MB"}}"#,
        ),
        case("glm 435 empty body", Glm, 435, ""),
        case(
            "kimi 500",
            Kimi,
            500,
            r#"{"error":{"type":"server_error","message":"internal error"}}"#,
        ),
        Case {
            retry_after: Some("10"),
            ..case(
                "glm 502 html",
                Glm,
                502,
                "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>",
            )
        },
        case("kimi 503 empty", Kimi, 503, ""),
        case(
            "glm 504",
            Glm,
            504,
            r#"{"error":{"code":"504","message":"gateway timeout"}}"#,
        ),
        case(
            "kimi 404",
            Kimi,
            404,
            r#"{"error":{"type":"resource_not_found_error","message":"file not found"}}"#,
        ),
        case(
            "kimi 403",
            Kimi,
            403,
            r#"{"error":{"type":"permission_denied_error","message":"forbidden"}}"#,
        ),
        case("kimi 413", Kimi, 413, ""),
        case(
            "malformed json 400",
            Kimi,
            400,
            r#"{"error": {"type": "invalid_request_error", "mess"#,
        ),
        case("malformed json 500", Glm, 500, "not json at all"),
    ];
    let mut out = String::new();
    for c in &cases {
        let mut headers = HeaderMap::new();
        if let Some(value) = c.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static(value));
        }
        let err = parse_error(c.provider, c.status, &headers, c.body.as_bytes(), now());
        writeln!(
            out,
            "{}\n  kind={} status={:?} code={:?} retryable={} retry_after={:?}\n  display: {}",
            c.name,
            err.kind,
            err.status,
            err.code,
            err.is_retryable(),
            err.retry_after.map(|d: Duration| d.as_secs()),
            err
        )
        .unwrap();
    }
    insta::assert_snapshot!(out);
}

#[test]
fn parsed_success_bodies() {
    let shapes: [(&str, ProviderKind, &str); 6] = [
        (
            "kimi status ok",
            ProviderKind::Kimi,
            r#"{"id":"cn-1","object":"file","bytes":11,"created_at":1700000000,"filename":"a.pdf","purpose":"file-extract","status":"ok","status_details":""}"#,
        ),
        (
            "kimi status ready",
            ProviderKind::Kimi,
            r#"{"id":"cn-2","object":"file","bytes":11,"created_at":1700000000,"filename":"a.pdf","purpose":"file-extract","status":"ready","status_details":{"pages":1}}"#,
        ),
        (
            "kimi without purpose",
            ProviderKind::Kimi,
            r#"{"id":"cn-3","object":"file","bytes":11,"created_at":1700000000,"filename":"a.pdf","status":"ok"}"#,
        ),
        (
            "glm top level",
            ProviderKind::Glm,
            r#"{"id":"file-1","object":"file","bytes":42,"created_at":1700000001,"filename":"b.jsonl","purpose":"batch"}"#,
        ),
        (
            "glm data.id",
            ProviderKind::Glm,
            r#"{"data":{"id":"file-2","object":"file","bytes":42,"created_at":1700000001,"filename":"b.jsonl","purpose":"batch"}}"#,
        ),
        (
            "glm id only in data",
            ProviderKind::Glm,
            r#"{"object":"file","bytes":42,"created_at":1700000001,"filename":"b.jsonl","purpose":"batch","data":{"id":"file-3"}}"#,
        ),
    ];
    let mut out = String::new();
    for (name, provider, body) in shapes {
        let parsed = parse_file_object(provider, 200, body.as_bytes());
        writeln!(out, "{name}: {parsed:?}").unwrap();
    }
    let lists = [
        (
            "kimi list",
            ProviderKind::Kimi,
            r#"{"object":"list","data":[{"id":"cn-1","object":"file","bytes":1,"created_at":1,"filename":"a","purpose":"file-extract","status":"ok"}]}"#,
        ),
        (
            "glm list",
            ProviderKind::Glm,
            r#"{"object":"list","data":[{"id":"f1","object":"file","bytes":1,"created_at":1,"filename":"a","purpose":"batch"}],"has_more":true}"#,
        ),
    ];
    for (name, provider, body) in lists {
        writeln!(
            out,
            "{name}: {:?}",
            parse_file_list(provider, 200, body.as_bytes())
        )
        .unwrap();
    }
    let deleted = parse_deleted(
        ProviderKind::Kimi,
        200,
        br#"{"id":"cn-1","object":"file","deleted":true}"#,
        "cn-1",
    );
    writeln!(out, "delete: {deleted:?}").unwrap();
    for (name, body) in [
        ("malformed json", "{\"id\": \"cn-1\", \"bytes\""),
        ("json array", "[]"),
        ("no id", r#"{"object":"file","bytes":3}"#),
        ("no bytes", r#"{"id":"x","object":"file"}"#),
    ] {
        let err = parse_file_object(ProviderKind::Kimi, 200, body.as_bytes())
            .err()
            .unwrap();
        writeln!(
            out,
            "{name}: kind={} retryable={} display: {err}",
            err.kind,
            err.is_retryable()
        )
        .unwrap();
    }
    insta::assert_snapshot!(out);
}

/// Parses a body with `multer` (the parser the stand-ins use) and returns (purpose, filename, file).
fn parse_with_multer(layout: &MultipartLayout, body: Vec<u8>) -> (String, String, Vec<u8>) {
    futures::executor::block_on(async move {
        let stream =
            futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(body)) });
        let mut multipart = multer::Multipart::new(stream, layout.boundary().as_str());
        let mut purpose = String::new();
        let mut filename = String::new();
        let mut file = Vec::new();
        while let Some(field) = multipart.next_field().await.unwrap() {
            match field.name() {
                Some("purpose") => purpose = field.text().await.unwrap(),
                Some("file") => {
                    filename = field.file_name().unwrap_or_default().to_owned();
                    file = field.bytes().await.unwrap().to_vec();
                }
                other => panic!("unexpected field {other:?}"),
            }
        }
        (purpose, filename, file)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn content_length_matches_the_bytes_and_fields_round_trip(
        filename in any::<String>(),
        purpose in "[a-z][a-z0-9_-]{0,24}",
        file in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let layout = MultipartLayout::new(Boundary::random(), &filename, &purpose, file.len() as u64).unwrap();
        let body = layout.assemble(&file);
        prop_assert_eq!(body.len() as u64, layout.content_length());
        // Part headers are pure ASCII with no stray CR/LF, whatever the name.
        let header_text = &layout.prefix()[..];
        prop_assert!(header_text.is_ascii());
        prop_assert_eq!(header_text.windows(2).filter(|w| w == b"\r\n").count(), 8);
        let (got_purpose, got_name, got_file) = parse_with_multer(&layout, body);
        prop_assert_eq!(got_purpose, purpose);
        prop_assert_eq!(got_file, file);
        prop_assert_eq!(got_name, encode_filename(&filename));
        let encoded = encode_filename(&filename);
        let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
        prop_assert_eq!(decoded.as_ref(), filename.as_str());
    }
}

//! Config sources: precedence, origins, and strict errors naming the variable or file and key.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use upramp_flags::{
    ConfigError, EnvSource, FlagSources, Origin, Overrides, Percent, Strategy, ENV_ENABLED,
    ENV_FALLBACK, ENV_MAX_RETRIES, ENV_ROLLOUT, ENV_TIMEOUT_SECS,
};

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("flags.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const FULL_FILE: &str = r#"
[async_upload]
enabled = true
rollout = 10.5
fallback = false
salt = "from-file"
max_retries = 5
timeout_secs = 12
strategy = "unleash"

[some_other_flag]
enabled = false
"#;

#[test]
fn defaults_alone() {
    let resolved = FlagSources::async_upload()
        .resolve(&EnvSource::empty())
        .unwrap();
    let c = &resolved.config;
    assert_eq!(
        (
            c.enabled,
            c.rollout,
            c.fallback,
            c.salt.as_str(),
            c.max_retries,
            c.timeout,
            c.strategy
        ),
        (
            false,
            Percent::ZERO,
            true,
            "async_upload",
            3,
            Duration::from_secs(30),
            Strategy::SipHash
        )
    );
    assert_eq!(resolved.origins, Default::default());
}

#[test]
fn file_then_env_then_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), FULL_FILE);
    let file = Origin::File(path.clone());

    let from_file = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap();
    let c = &from_file.config;
    assert_eq!(
        (
            c.enabled,
            c.rollout.thousandths(),
            c.fallback,
            c.salt.as_str(),
            c.max_retries,
            c.timeout,
            c.strategy
        ),
        (
            true,
            10_500,
            false,
            "from-file",
            5,
            Duration::from_secs(12),
            Strategy::Unleash
        )
    );
    assert!([
        &from_file.origins.enabled,
        &from_file.origins.rollout,
        &from_file.origins.fallback,
        &from_file.origins.salt,
        &from_file.origins.max_retries,
        &from_file.origins.timeout,
        &from_file.origins.strategy
    ]
    .iter()
    .all(|o| **o == file));

    let env = EnvSource::from_map([
        ("ASYNC_UPLOAD_ENABLED", "off"),
        ("ASYNC_UPLOAD_ROLLOUT", "50%"),
        ("ASYNC_UPLOAD_MAX_RETRIES", "0"),
    ]);
    let with_env = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&env)
        .unwrap();
    assert!(!with_env.config.enabled);
    assert_eq!(with_env.config.rollout.thousandths(), 50_000);
    assert_eq!(with_env.config.max_retries, 0);
    assert!(!with_env.config.fallback);
    assert_eq!(
        with_env.origins.enabled,
        Origin::Env("ASYNC_UPLOAD_ENABLED".into())
    );
    assert_eq!(
        with_env.origins.rollout,
        Origin::Env("ASYNC_UPLOAD_ROLLOUT".into())
    );
    assert_eq!(with_env.origins.fallback, file);

    let overrides = Overrides {
        rollout: Some(Percent::from_thousandths(1).unwrap()),
        salt: Some("code".into()),
        ..Overrides::default()
    };
    let all = FlagSources::async_upload()
        .with_file(&path)
        .with_overrides(overrides)
        .resolve(&env)
        .unwrap();
    assert_eq!(all.config.rollout.thousandths(), 1);
    assert_eq!(all.config.salt, "code");
    assert_eq!(all.origins.rollout, Origin::Override);
    assert_eq!(all.origins.salt, Origin::Override);
    assert_eq!(
        all.origins.enabled,
        Origin::Env("ASYNC_UPLOAD_ENABLED".into())
    );
    assert_eq!(all.origins.timeout, file);
}

#[test]
fn a_file_that_does_not_configure_the_flag_is_an_error_naming_it() {
    // Read as the defaults, such a file would silently disable the flag for the whole fleet.
    let dir = tempfile::tempdir().unwrap();
    for (text, hint) in [
        ("[some_other_flag]\nenabled = true\n", ""),
        ("", ""),
        (
            "[async_uplaod]\nenabled = true\n",
            " (did you mean [async_uplaod]?)",
        ),
        (
            "[Async-Upload]\nenabled = true\n",
            " (did you mean [Async-Upload]?)",
        ),
    ] {
        let path = write(dir.path(), text);
        let err = FlagSources::async_upload()
            .with_file(&path)
            .resolve(&EnvSource::empty())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "flags file {} has no [async_upload] table{hint}",
                path.display()
            )
        );
    }
}

#[test]
fn rollout_accepts_a_string_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[async_upload]\nrollout = \"0.001%\"\n");
    let resolved = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap();
    assert_eq!(resolved.config.rollout.thousandths(), 1);
}

#[test]
fn the_env_prefix_is_configurable() {
    let env = EnvSource::from_map([("CHECKOUT_V2_ENABLED", "1"), ("ASYNC_UPLOAD_ENABLED", "0")]);
    let resolved = FlagSources::new("checkout")
        .with_env_prefix("CHECKOUT_V2")
        .resolve(&env)
        .unwrap();
    assert!(resolved.config.enabled);
    assert_eq!(resolved.config.salt, "checkout");
    assert_eq!(
        resolved.origins.enabled,
        Origin::Env("CHECKOUT_V2_ENABLED".into())
    );
}

/// Every bad value of the issue, for every variable it applies to: an error naming the variable and value.
#[test]
fn every_bad_env_value_is_an_error_naming_the_variable_and_value() {
    let bad_percent = [
        "abc", "150", "-1", "1e3", "0x10", "NaN", "12.34567", "", " 5", "5 %", "100.001", "inf",
    ];
    let bad_bool = [
        "",
        "abc",
        "2",
        "-1",
        "y",
        "n",
        "tru",
        "yes please",
        " true",
        "NaN",
    ];
    let bad_count = [
        "",
        "abc",
        "-1",
        "1e3",
        "0x10",
        "NaN",
        "1.5",
        "4294967296",
        " 3",
    ];
    let bad_timeout = ["", "abc", "-1", "1e3", "0x10", "NaN", "0", "2.5"];
    let table: [(&str, &[&str]); 5] = [
        (ENV_ROLLOUT, &bad_percent),
        (ENV_ENABLED, &bad_bool),
        (ENV_FALLBACK, &bad_bool),
        (ENV_MAX_RETRIES, &bad_count),
        (ENV_TIMEOUT_SECS, &bad_timeout),
    ];
    for (suffix, values) in table {
        let var = format!("ASYNC_UPLOAD_{suffix}");
        for value in values {
            let err = FlagSources::async_upload()
                .resolve(&EnvSource::from_map([(var.as_str(), *value)]))
                .unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ConfigError::Env { .. }),
                "{var}={value:?}: {err:?}"
            );
            assert!(message.contains(&var), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}

#[test]
fn error_messages_read_well() {
    let cases = [
        (
            "ASYNC_UPLOAD_ROLLOUT",
            "12.34567",
            "invalid value \"12.34567\" in environment variable ASYNC_UPLOAD_ROLLOUT: more than three decimals (the resolution is 0.001%)",
        ),
        (
            "ASYNC_UPLOAD_ENABLED",
            "",
            "invalid value \"\" in environment variable ASYNC_UPLOAD_ENABLED: empty value, expected true/false/1/0/yes/no/on/off",
        ),
    ];
    for (var, value, expected) in cases {
        let err = FlagSources::async_upload()
            .resolve(&EnvSource::from_map([(var, value)]))
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}

#[cfg(unix)]
#[test]
fn a_non_utf8_env_value_is_an_error() {
    use std::os::unix::ffi::OsStringExt;
    let env = EnvSource::from_fn(|name| {
        (name == "ASYNC_UPLOAD_ROLLOUT").then(|| std::ffi::OsString::from_vec(vec![b'1', 0xff]))
    });
    let err = FlagSources::async_upload().resolve(&env).unwrap_err();
    assert!(err.to_string().contains("ASYNC_UPLOAD_ROLLOUT"), "{err}");
}

#[test]
fn bad_file_values_name_the_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("rollout = 150", "async_upload.rollout", "150"),
        ("rollout = 12.34567", "async_upload.rollout", "12.34567"),
        ("rollout = -1", "async_upload.rollout", "-1"),
        ("rollout = 1e3", "async_upload.rollout", "1000"),
        ("rollout = nan", "async_upload.rollout", "nan"),
        ("rollout = \"abc\"", "async_upload.rollout", "\"abc\""),
        ("rollout = \"\"", "async_upload.rollout", "\"\""),
        ("rollout = true", "async_upload.rollout", "true"),
        ("enabled = \"yes\"", "async_upload.enabled", "\"yes\""),
        ("fallback = 1", "async_upload.fallback", "1"),
        ("max_retries = -1", "async_upload.max_retries", "-1"),
        ("max_retries = 1.5", "async_upload.max_retries", "1.5"),
        ("timeout_secs = 0", "async_upload.timeout_secs", "0"),
        ("salt = \"\"", "async_upload.salt", "\"\""),
        ("strategy = \"md5\"", "async_upload.strategy", "\"md5\""),
    ];
    for (line, key, value) in cases {
        let path = write(dir.path(), &format!("[async_upload]\n{line}\n"));
        let err = FlagSources::async_upload()
            .with_file(&path)
            .resolve(&EnvSource::empty())
            .unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ConfigError::FileValue { .. }),
            "{line}: {err:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(key), "{message}");
        assert!(message.contains(value), "{message}");
    }
}

#[test]
fn unknown_keys_and_bad_syntax_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[async_upload]\nrolout = 10\n");
    let err = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "async_upload.rolout"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));

    let path = write(dir.path(), "async_upload = 3\n");
    let err = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap_err();
    assert!(err.to_string().contains("expected a table"), "{err}");

    let path = write(dir.path(), "[async_upload\nenabled = true\n");
    let err = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap_err();
    assert!(matches!(err, ConfigError::FileSyntax { .. }), "{err:?}");
    assert!(!err.to_string().contains('\n'), "{err}");

    let missing = dir.path().join("missing.toml");
    let err = FlagSources::async_upload()
        .with_file(&missing)
        .resolve(&EnvSource::empty())
        .unwrap_err();
    assert!(matches!(err, ConfigError::FileRead { .. }), "{err:?}");
}

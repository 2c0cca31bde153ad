//! FlagStore updates, reloads (deterministic and watched) and atomic persistence.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use upramp_flags::{
    write_rollout_to_file, ConfigError, EnvSource, FlagConfig, FlagSources, FlagStore, Origin,
    Percent, Route,
};

/// Generous: only reached when the watcher is broken.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

fn store_for(path: &std::path::Path, env: EnvSource) -> FlagStore {
    FlagStore::from_sources(FlagSources::async_upload().with_file(path), env).unwrap()
}

#[test]
fn reload_now_swaps_in_the_new_file_and_keeps_old_snapshots_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 10\n").unwrap();
    let store = store_for(&path, EnvSource::empty());
    let before = store.snapshot();
    assert_eq!(before.rollout.thousandths(), 10_000);

    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 50\n").unwrap();
    let after = store.reload_now().unwrap();
    assert_eq!(after.rollout.thousandths(), 50_000);
    assert_eq!(store.snapshot().rollout.thousandths(), 50_000);
    assert_eq!(
        before.rollout.thousandths(),
        10_000,
        "a held snapshot never changes"
    );
    assert_eq!((store.reload_attempts(), store.reload_errors()), (1, 0));
}

#[test]
fn an_invalid_file_keeps_the_last_good_snapshot_and_counts_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 10\n").unwrap();
    let store = store_for(&path, EnvSource::empty());

    for bad in [
        "[async_upload]\nrollout = 150\n",
        "[async_upload]\nbogus = 1\n",
        "not toml [",
    ] {
        std::fs::write(&path, bad).unwrap();
        assert!(store.reload_now().is_err());
        assert_eq!(store.snapshot().rollout.thousandths(), 10_000);
        assert!(store.snapshot().enabled);
    }
    assert_eq!(store.reload_errors(), 3);

    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 20\n").unwrap();
    assert_eq!(store.reload_now().unwrap().rollout.thousandths(), 20_000);
    assert_eq!((store.reload_attempts(), store.reload_errors()), (4, 3));
}

#[test]
fn env_still_wins_over_a_reloaded_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[async_upload]\nrollout = 10\n").unwrap();
    let store = store_for(
        &path,
        EnvSource::from_map([("ASYNC_UPLOAD_ENABLED", "true")]),
    );
    std::fs::write(&path, "[async_upload]\nenabled = false\nrollout = 30\n").unwrap();
    let config = store.reload_now().unwrap();
    assert!(config.enabled);
    assert_eq!(config.rollout.thousandths(), 30_000);
    assert_eq!(
        store.origins().enabled,
        Origin::Env("ASYNC_UPLOAD_ENABLED".into())
    );
}

#[test]
fn set_rollout_is_an_override_that_survives_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 10\n").unwrap();
    let store = store_for(&path, EnvSource::empty());
    let clone = store.clone();
    clone.set_rollout(Percent::HUNDRED);
    assert_eq!(store.evaluate("any key").route, Route::Async);
    assert_eq!(store.origins().rollout, Origin::Override);

    std::fs::write(
        &path,
        "[async_upload]\nenabled = true\nrollout = 1\nmax_retries = 9\n",
    )
    .unwrap();
    let config = store.reload_now().unwrap();
    assert_eq!((config.rollout, config.max_retries), (Percent::HUNDRED, 9));
}

#[test]
fn replace_swaps_the_whole_config() {
    let store = FlagStore::new(FlagConfig::new("async_upload"));
    let mut config = FlagConfig::new("async_upload");
    config.enabled = true;
    config.rollout = Percent::HUNDRED;
    config.salt = "new-salt".into();
    store.replace(config.clone());
    assert_eq!(*store.snapshot(), config);
    assert_eq!(store.evaluate("k").route, Route::Async);
    assert!(matches!(
        store.reload_now(),
        Err(ConfigError::NoFile { .. })
    ));
    assert!(matches!(
        store.watch_file(),
        Err(ConfigError::NoFile { .. })
    ));
}

#[test]
fn the_watcher_reloads_on_change_and_survives_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[async_upload]\nenabled = true\nrollout = 10\n").unwrap();
    let store = store_for(&path, EnvSource::empty());
    let guard = store.watch_file().unwrap();
    assert_eq!(guard.path(), path);

    // An atomic replace (rename) as the rollout controller does it.
    write_rollout_to_file(&path, "async_upload", Percent::parse("25").unwrap()).unwrap();
    let reloaded = wait_until(&store, |s| s.snapshot().rollout.thousandths() == 25_000);
    assert!(reloaded, "no reload seen after an atomic write");

    // An invalid file replacing the good one: kept out, counted.
    let mut invalid = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    std::io::Write::write_all(&mut invalid, b"[async_upload]\nrollout = \"abc\"\n").unwrap();
    invalid.persist(&path).unwrap();
    let counted = wait_until(&store, |s| s.reload_errors() > 0);
    assert!(counted, "the invalid file was not reported");
    assert_eq!(store.snapshot().rollout.thousandths(), 25_000);

    drop(guard);
}

/// Wait for reload attempts one at a time (each bounded by the generous timeout) until `done` holds.
fn wait_until(store: &FlagStore, done: impl Fn(&FlagStore) -> bool) -> bool {
    loop {
        if done(store) {
            return true;
        }
        let next = store.reload_attempts() + 1;
        if !store.wait_for_reload_attempts(next, WATCH_TIMEOUT) {
            return done(store);
        }
    }
}

#[test]
fn write_rollout_preserves_other_keys_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(
        &path,
        "[async_upload]\nenabled = true\nrollout = 1\nsalt = \"s\"\n\n[other]\nenabled = false\nrollout = 7\n",
    )
    .unwrap();
    write_rollout_to_file(&path, "async_upload", Percent::parse("12.345").unwrap()).unwrap();
    let table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    assert_eq!(table["async_upload"]["rollout"].as_float(), Some(12.345));
    assert_eq!(table["async_upload"]["salt"].as_str(), Some("s"));
    assert_eq!(table["async_upload"]["enabled"].as_bool(), Some(true));
    assert_eq!(table["other"]["rollout"].as_integer(), Some(7));

    let resolved = FlagSources::async_upload()
        .with_file(&path)
        .resolve(&EnvSource::empty())
        .unwrap();
    assert_eq!(resolved.config.rollout.thousandths(), 12_345);

    // A file that exists but has no table for the flag is refused, not extended: the reader refuses
    // it too, and a misspelled table would otherwise stay beside the new one.
    let before = std::fs::read_to_string(&path).unwrap();
    let err = write_rollout_to_file(&path, "brand_new", Percent::HUNDRED).unwrap_err();
    assert!(
        err.to_string().contains("has no [brand_new] table"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "flags.toml")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn write_rollout_refuses_to_clobber_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "not [ toml").unwrap();
    let err = write_rollout_to_file(&path, "async_upload", Percent::ZERO).unwrap_err();
    assert!(matches!(err, ConfigError::FileSyntax { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not [ toml");

    std::fs::write(&path, "async_upload = 5\n").unwrap();
    assert!(write_rollout_to_file(&path, "async_upload", Percent::ZERO).is_err());
}

/// The Kubernetes ConfigMap mount: `flags.toml -> ..data/flags.toml`, `..data -> ..<timestamp>/`,
/// updated by writing a new timestamped directory and renaming a fresh `..data` symlink over the old
/// one. No event names `flags.toml` itself; the watcher must still reload.
#[cfg(unix)]
#[test]
fn the_watcher_follows_a_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let version = |name: &str, body: &str| {
        std::fs::create_dir(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("flags.toml"), body).unwrap();
    };
    version(
        "..2026_01_01_a",
        "[async_upload]\nenabled = true\nrollout = 10\n",
    );
    symlink("..2026_01_01_a", root.join("..data")).unwrap();
    symlink("..data/flags.toml", root.join("flags.toml")).unwrap();
    let path = root.join("flags.toml");
    let store = store_for(&path, EnvSource::empty());
    assert_eq!(store.snapshot().rollout.thousandths(), 10_000);
    let guard = store.watch_file().unwrap();

    let swap = |name: &str, body: &str| {
        version(name, body);
        symlink(name, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    };
    swap(
        "..2026_01_01_b",
        "[async_upload]\nenabled = true\nrollout = 50\n",
    );
    let reloaded = wait_until(&store, |s| s.snapshot().rollout.thousandths() == 50_000);
    assert!(reloaded, "no reload seen after the ..data swap");

    // A bad version swapped in keeps the last good snapshot and is counted.
    swap("..2026_01_01_c", "[async_upload]\nrollout = \"half\"\n");
    let counted = wait_until(&store, |s| s.reload_errors() > 0);
    assert!(counted, "the bad version was not reported");
    assert_eq!(store.snapshot().rollout.thousandths(), 50_000);
    drop(guard);
}

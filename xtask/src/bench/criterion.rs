//! Reading criterion's results: `<target>/criterion/<id>/new/estimates.json` holds the median.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::Deserialize;

use super::results::CriterionMedian;

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct BenchmarkId {
    full_id: String,
}

/// The median in nanoseconds from the text of an `estimates.json`.
pub fn parse_median_ns(estimates_json: &str) -> anyhow::Result<f64> {
    let estimates: Estimates = serde_json::from_str(estimates_json)
        .context("estimates.json has no median.point_estimate")?;
    let median = estimates.median.point_estimate;
    anyhow::ensure!(
        median.is_finite() && median >= 0.0,
        "estimates.json median {median} is not a duration"
    );
    Ok(median)
}

/// Every benchmark under `criterion_dir` whose `new/estimates.json` was written at or after `since`,
/// sorted by name, so results of earlier runs are never reported as this run's.
pub fn collect_medians(
    criterion_dir: &Path,
    since: SystemTime,
) -> anyhow::Result<Vec<CriterionMedian>> {
    let mut found = Vec::new();
    let mut pending = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "new") {
                    found.push(path);
                } else {
                    pending.push(path);
                }
            }
        }
    }
    let mut medians = Vec::new();
    for new_dir in found {
        let estimates = new_dir.join("estimates.json");
        let Ok(metadata) = std::fs::metadata(&estimates) else {
            continue;
        };
        if metadata.modified().is_ok_and(|modified| modified < since) {
            continue;
        }
        let text = std::fs::read_to_string(&estimates)
            .with_context(|| format!("cannot read {}", estimates.display()))?;
        let median_ns =
            parse_median_ns(&text).with_context(|| format!("in {}", estimates.display()))?;
        medians.push(CriterionMedian {
            name: benchmark_name(criterion_dir, &new_dir),
            median_ns,
        });
    }
    medians.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(medians)
}

/// The benchmark's `full_id` from `benchmark.json`, else its directory path under `criterion/`.
fn benchmark_name(criterion_dir: &Path, new_dir: &Path) -> String {
    let from_file = std::fs::read_to_string(new_dir.join("benchmark.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<BenchmarkId>(&text).ok())
        .map(|id| id.full_id);
    from_file.unwrap_or_else(|| {
        let bench_dir: PathBuf = new_dir
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf);
        bench_dir
            .strip_prefix(criterion_dir)
            .unwrap_or(&bench_dir)
            .display()
            .to_string()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":20.1,"upper_bound":20.9},"point_estimate":20.5,"standard_error":0.2},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":19.8,"upper_bound":20.4},"point_estimate":20.125,"standard_error":0.15},"median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.1,"upper_bound":0.3},"point_estimate":0.2,"standard_error":0.05},"slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":0.5,"upper_bound":0.9},"point_estimate":0.7,"standard_error":0.1}}"#;

    #[test]
    fn reads_the_median_point_estimate() {
        assert_eq!(parse_median_ns(ESTIMATES).unwrap(), 20.125);
    }

    #[test]
    fn a_file_without_a_median_is_an_error_naming_it() {
        let err = parse_median_ns(r#"{"mean":{"point_estimate":1.0}}"#).unwrap_err();
        assert!(format!("{err:#}").contains("median.point_estimate"));
        assert!(parse_median_ns(r#"{"median":{"point_estimate":-1.0}}"#).is_err());
    }

    #[test]
    fn collects_fresh_benchmarks_by_full_id() {
        let dir = tempfile::tempdir().unwrap();
        let new_dir = dir.path().join("evaluate").join("hot").join("new");
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::write(new_dir.join("estimates.json"), ESTIMATES).unwrap();
        std::fs::write(
            new_dir.join("benchmark.json"),
            r#"{"group_id":"evaluate","function_id":"hot","full_id":"evaluate/hot"}"#,
        )
        .unwrap();
        let plain = dir.path().join("bucket").join("new");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("estimates.json"), ESTIMATES).unwrap();

        let medians = collect_medians(dir.path(), SystemTime::UNIX_EPOCH).unwrap();
        let names: Vec<&str> = medians.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["bucket", "evaluate/hot"]);

        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(collect_medians(dir.path(), later).unwrap().is_empty());
    }
}

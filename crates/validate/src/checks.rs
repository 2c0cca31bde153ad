//! The validation's checks: pure functions over recorded observations ([`crate::observe`]).
//!
//! Each returns a [`Check`] with a verdict and a one-line detail carrying the numbers, so a failed run says
//! what was measured, not only that something failed. The unit tests below feed each check bad observations
//! and assert that it fails.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::observe::{
    AuditRollback, ControllerPosition, DecisionKind, DecisionRecord, Provider, RequestRecord,
    RequestResult, StoredRecord, Verdict,
};
use crate::stats::{share_band, SHARE_Z};

/// The verdict of one check, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short stable name (e.g. `async_share`).
    pub name: String,
    /// Whether the check held.
    pub passed: bool,
    /// One line: what was measured against what.
    pub detail: String,
}

impl Check {
    fn new(name: &str, passed: bool, detail: String) -> Self {
        Check {
            name: name.to_owned(),
            passed,
            detail,
        }
    }
}

/// The measured async share lies within the binomial tolerance of `target_thousandths` (exactly none at
/// 0% and exactly all at 100%).
///
/// The flag decides per routing key, so the unit of the binomial is the distinct key: a key seen many
/// times is still one draw. A key counts as async when its requests went to the async path.
pub fn async_share(target_thousandths: u32, records: &[RequestRecord]) -> Check {
    let (routed, total) = async_keys(records);
    let target = f64::from(target_thousandths) / 100_000.0;
    if total == 0 {
        return Check::new("async_share", false, "no requests were made".to_owned());
    }
    let share = routed as f64 / total as f64;
    let band = share_band(target, total, SHARE_Z);
    Check::new(
        "async_share",
        band.contains(share),
        format!(
            "{routed} of {total} keys async = {:.3}% (target {:.3}%, accepted {:.3}%..{:.3}%) over {} requests",
            share * 100.0,
            target * 100.0,
            band.lo * 100.0,
            band.hi * 100.0,
            records.len()
        ),
    )
}

/// `(async keys, distinct keys)` among `records`: the measured share's numerator and denominator.
pub fn async_keys(records: &[RequestRecord]) -> (u64, u64) {
    let mut keys: BTreeMap<&str, bool> = BTreeMap::new();
    for record in records {
        *keys.entry(record.routing_key.as_str()).or_default() |= record.routed_async();
    }
    let routed = keys.values().filter(|a| **a).count() as u64;
    (routed, keys.len() as u64)
}

/// Every receipt's path agrees with the flag decision the driver evaluated for the same key: the uploader
/// routes by the flag and nothing else.
pub fn routing_follows_flag(records: &[RequestRecord]) -> Check {
    let mismatched: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| matches!(r.result, RequestResult::Receipt { .. }))
        .filter(|r| r.routed_async() != r.decided_async)
        .collect();
    let detail = match mismatched.first() {
        None => format!(
            "{} receipts, every path matches the flag",
            records.iter().filter(|r| r.succeeded()).count()
        ),
        Some(first) => format!(
            "{} receipts disagree with the flag (first: key {} decided {})",
            mismatched.len(),
            first.routing_key,
            if first.decided_async { "async" } else { "sync" }
        ),
    };
    Check::new("routing_follows_flag", mismatched.is_empty(), detail)
}

/// Every key that was async at an earlier stage and is seen again is still async. Fails when earlier
/// stages had async keys but none of them was seen again: a stickiness check with no evidence is no check.
pub fn stickiness(earlier_async: &BTreeSet<String>, records: &[RequestRecord]) -> Check {
    if earlier_async.is_empty() {
        return Check::new(
            "stickiness",
            true,
            "no key was async at an earlier stage".to_owned(),
        );
    }
    let mut revisited = BTreeSet::new();
    let mut left = BTreeSet::new();
    for record in records
        .iter()
        .filter(|r| earlier_async.contains(&r.routing_key))
    {
        revisited.insert(record.routing_key.as_str());
        if !record.routed_async() {
            left.insert(record.routing_key.as_str());
        }
    }
    if revisited.is_empty() {
        return Check::new(
            "stickiness",
            false,
            format!(
                "none of the {} earlier async keys was seen again",
                earlier_async.len()
            ),
        );
    }
    let detail = match left.iter().next() {
        None => format!(
            "{} of {} earlier async keys seen again, all still async",
            revisited.len(),
            earlier_async.len()
        ),
        Some(first) => format!(
            "{} of {} revisited earlier async keys went sync (first: {first})",
            left.len(),
            revisited.len()
        ),
    };
    Check::new("stickiness", left.is_empty(), detail)
}

/// No request was lost: each has a receipt whose file the stand-in holds with the source's SHA-256 and
/// size (and the receipt agrees), or a recorded error. `stored` is what the stand-ins hold for these
/// requests (files stored while they ran).
pub fn no_lost_requests(records: &[RequestRecord], stored: &[StoredRecord]) -> Check {
    let by_id: BTreeMap<(Provider, &str), &StoredRecord> = stored
        .iter()
        .map(|s| ((s.provider, s.id.as_str()), s))
        .collect();
    let mut receipts = 0usize;
    let mut errors = 0usize;
    let mut problems = Vec::new();
    for record in records {
        match &record.result {
            RequestResult::Error { .. } => errors += 1,
            RequestResult::Receipt {
                file_id,
                sha256,
                bytes,
                ..
            } => {
                receipts += 1;
                match by_id.get(&(record.provider, file_id.as_str())) {
                    None => problems.push(format!(
                        "{} file {file_id} (key {}) is not on the stand-in",
                        record.provider, record.routing_key
                    )),
                    Some(file) if file.sha256 != record.source_sha256 => problems.push(format!(
                        "{} file {file_id} has sha256 {} but the source has {}",
                        record.provider, file.sha256, record.source_sha256
                    )),
                    Some(file) if file.bytes != record.source_bytes => problems.push(format!(
                        "{} file {file_id} has {} bytes but the source has {}",
                        record.provider, file.bytes, record.source_bytes
                    )),
                    Some(_) if *sha256 != record.source_sha256 || *bytes != record.source_bytes => {
                        problems.push(format!(
                            "receipt for {} file {file_id} reports sha256 {sha256} / {bytes} bytes, not the source's",
                            record.provider
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let detail = match problems.first() {
        None => format!(
            "{} requests: {receipts} receipts verified on the stand-ins (SHA-256 and size), {errors} recorded errors",
            records.len()
        ),
        Some(first) => format!("{} lost or corrupt: {first}", problems.len()),
    };
    Check::new("no_lost_requests", problems.is_empty(), detail)
}

/// The stand-ins hold exactly one file per receipt: no duplicate uploads, no orphans, no id handed out twice.
pub fn no_duplicates(records: &[RequestRecord], stored: &[StoredRecord]) -> Check {
    let mut receipt_ids: BTreeMap<(Provider, &str), usize> = BTreeMap::new();
    for record in records {
        if let RequestResult::Receipt { file_id, .. } = &record.result {
            *receipt_ids
                .entry((record.provider, file_id.as_str()))
                .or_default() += 1;
        }
    }
    let reused = receipt_ids.values().filter(|n| **n > 1).count();
    let orphans: Vec<&StoredRecord> = stored
        .iter()
        .filter(|s| !receipt_ids.contains_key(&(s.provider, s.id.as_str())))
        .collect();
    let passed = reused == 0 && orphans.is_empty();
    let detail = if passed {
        format!(
            "{} stored files for {} receipts",
            stored.len(),
            receipt_ids.len()
        )
    } else {
        format!(
            "{} stored files for {} receipts: {} ids on several receipts, {} stored files no receipt names{}",
            stored.len(),
            receipt_ids.len(),
            reused,
            orphans.len(),
            orphans
                .first()
                .map(|o| format!(" (first: {} {})", o.provider, o.id))
                .unwrap_or_default()
        )
    };
    Check::new("no_duplicates", passed, detail)
}

/// Every request got a receipt (fallback absorbed every async failure). `min_fallbacks` guards against a
/// vacuous pass: the fault must actually have been absorbed by fallback that many times.
pub fn every_request_succeeded(records: &[RequestRecord], min_fallbacks: usize) -> Check {
    let failed = records.iter().filter(|r| !r.succeeded()).count();
    let fallbacks = records
        .iter()
        .filter(|r| {
            matches!(
                r.result,
                RequestResult::Receipt {
                    path: crate::observe::UploadPath::SyncFallback,
                    ..
                }
            )
        })
        .count();
    let passed = failed == 0 && fallbacks >= min_fallbacks && !records.is_empty();
    Check::new(
        "every_request_succeeded",
        passed,
        format!(
            "{} of {} requests succeeded, {fallbacks} through sync fallback (at least {min_fallbacks} expected)",
            records.len() - failed,
            records.len()
        ),
    )
}

/// The stage ended with an advance (or completion) on which every async gate passed and no control gate
/// failed.
pub fn gates_passed(final_decision: Option<&DecisionRecord>) -> Check {
    let Some(decision) = final_decision else {
        return Check::new(
            "gates_passed",
            false,
            "the controller never decided".to_owned(),
        );
    };
    let failing: Vec<&str> = decision
        .gates
        .iter()
        .filter(|g| g.verdict == Verdict::Fail || (!g.control && g.verdict != Verdict::Pass))
        .map(|g| g.name.as_str())
        .collect();
    let moved_on = matches!(
        decision.kind,
        DecisionKind::Advance | DecisionKind::Complete
    );
    let passed = moved_on && failing.is_empty();
    let gates = decision
        .gates
        .iter()
        .map(|g| match g.value {
            Some(v) => format!("{}={v:.4}", g.name),
            None => g.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let detail = if passed {
        format!(
            "{} with {} async gates passing, control healthy ({gates})",
            decision.kind.as_str(),
            decision.gates.iter().filter(|g| !g.control).count()
        )
    } else {
        format!(
            "ended with {} ({}); gates not passing: {}",
            decision.kind.as_str(),
            decision.reason,
            if failing.is_empty() {
                "none".to_owned()
            } else {
                failing.join(", ")
            }
        )
    };
    Check::new("gates_passed", passed, detail)
}

/// The controller rolled back automatically and the applied percent ended at 0.
pub fn rolled_back(decisions: &[DecisionRecord]) -> Check {
    let rollback = decisions.iter().find(|d| d.kind == DecisionKind::Rollback);
    let final_percent = decisions.last().map(|d| d.percent_after);
    match rollback {
        Some(r) if r.percent_after == 0.0 && final_percent == Some(0.0) => Check::new(
            "rolled_back",
            true,
            format!(
                "rolled back to 0% at {:.1} h in stage {} ({})",
                r.at_hours, r.stage_index, r.reason
            ),
        ),
        Some(r) => Check::new(
            "rolled_back",
            false,
            format!(
                "rolled back to {}% and ended at {:?}%",
                r.percent_after, final_percent
            ),
        ),
        None => Check::new(
            "rolled_back",
            false,
            format!(
                "no rollback in {} decisions (final percent {:?})",
                decisions.len(),
                final_percent
            ),
        ),
    }
}

/// The audit log's rollback record names a failed gate whose name contains one of `expected_gates`, with
/// its measured value and threshold.
pub fn audit_names_failing_gate(audit: &[AuditRollback], expected_gates: &[&str]) -> Check {
    let named = audit.iter().flat_map(|a| a.failed_gates.iter()).find(|g| {
        expected_gates.iter().any(|e| g.name.contains(e))
            && g.value.is_some_and(f64::is_finite)
            && g.threshold.is_some_and(f64::is_finite)
    });
    match named {
        Some(gate) => Check::new(
            "audit_names_gate",
            true,
            format!(
                "audit log: gate {} failed with {:.4} against threshold {:.4}{}",
                gate.name,
                gate.value.unwrap_or(f64::NAN),
                gate.threshold.unwrap_or(f64::NAN),
                gate.interval
                    .map(|i| format!(" (interval {:.4}..{:.4})", i.lo, i.hi))
                    .unwrap_or_default()
            ),
        ),
        None => Check::new(
            "audit_names_gate",
            false,
            format!(
                "{} rollback records in the audit log, none names a failed {} gate with its numbers",
                audit.len(),
                expected_gates.join("/")
            ),
        ),
    }
}

/// No decision in `decisions` rolled back.
pub fn no_rollback(decisions: &[DecisionRecord]) -> Check {
    let rollbacks = decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Rollback)
        .count();
    Check::new(
        "no_rollback",
        rollbacks == 0,
        format!("{rollbacks} rollbacks in {} decisions", decisions.len()),
    )
}

/// Every decision in `decisions` (the fault window) was a hold: neither advance nor rollback. Fails on an
/// empty window: holding must have been observed.
pub fn held_throughout(decisions: &[DecisionRecord]) -> Check {
    let moved: Vec<&DecisionRecord> = decisions
        .iter()
        .filter(|d| d.kind != DecisionKind::Hold)
        .collect();
    let passed = !decisions.is_empty() && moved.is_empty();
    let detail = match moved.first() {
        None if decisions.is_empty() => "no decisions in the window".to_owned(),
        None => format!(
            "{} holds, no advance or rollback (last reason: {})",
            decisions.len(),
            decisions.last().map(|d| d.reason.as_str()).unwrap_or("")
        ),
        Some(first) => format!(
            "{} at {:.1} h while it should hold ({})",
            first.kind.as_str(),
            first.at_hours,
            first.reason
        ),
    };
    Check::new("held_throughout", passed, detail)
}

/// Some decision in `decisions` advanced (or completed): the rollout made progress.
pub fn progressed(decisions: &[DecisionRecord]) -> Check {
    match decisions
        .iter()
        .find(|d| matches!(d.kind, DecisionKind::Advance | DecisionKind::Complete))
    {
        Some(d) => Check::new(
            "progressed",
            true,
            format!(
                "{} at {:.1} h to {}%",
                d.kind.as_str(),
                d.at_hours,
                d.percent_after
            ),
        ),
        None => Check::new(
            "progressed",
            false,
            format!("no advance in {} decisions", decisions.len()),
        ),
    }
}

/// The restarted controller stands exactly where the stopped one stood.
pub fn resumed_in_place(before: &ControllerPosition, after: &ControllerPosition) -> Check {
    let passed = before == after;
    Check::new(
        "resumed_in_place",
        passed,
        if passed {
            format!(
                "stage {} at {}% ({}), bake started {}, {} consecutive failures: unchanged across the restart",
                after.stage_index,
                f64::from(after.percent_thousandths) / 1000.0,
                after.state,
                after.bake_started,
                after.consecutive_failures
            )
        } else {
            format!("before the stop {before:?}, after the restart {after:?}")
        },
    )
}

/// The controller never advanced on fewer than `min_samples` async samples, and it did hold for lack of
/// samples at least once (the low-traffic condition was really exercised).
pub fn held_for_min_samples(decisions: &[DecisionRecord], min_samples: u64) -> Check {
    let early = decisions
        .iter()
        .find(|d| d.kind == DecisionKind::Advance && d.async_samples < min_samples);
    let starved_holds = decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Hold && d.async_samples < min_samples)
        .count();
    match early {
        Some(d) => Check::new(
            "held_for_min_samples",
            false,
            format!(
                "advanced at {:.1} h on {} async samples (minimum {min_samples})",
                d.at_hours, d.async_samples
            ),
        ),
        None if starved_holds == 0 => Check::new(
            "held_for_min_samples",
            false,
            format!("never held below {min_samples} async samples: traffic was not low"),
        ),
        None => Check::new(
            "held_for_min_samples",
            true,
            format!(
                "{starved_holds} holds below {min_samples} async samples, no advance before the minimum"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::observe::{GateRecord, UploadPath};

    fn receipt(provider: Provider, key: &str, id: &str, path: UploadPath) -> RequestRecord {
        RequestRecord {
            provider,
            routing_key: key.to_owned(),
            decided_async: path.routed_async(),
            source_sha256: "aa".repeat(32),
            source_bytes: 10,
            result: RequestResult::Receipt {
                file_id: id.to_owned(),
                path,
                sha256: "aa".repeat(32),
                bytes: 10,
                attempts: 1,
            },
        }
    }

    fn stored(provider: Provider, id: &str) -> StoredRecord {
        StoredRecord {
            provider,
            id: id.to_owned(),
            bytes: 10,
            sha256: "aa".repeat(32),
        }
    }

    fn traffic(total: usize, async_count: usize) -> Vec<RequestRecord> {
        (0..total)
            .map(|i| {
                let path = if i < async_count {
                    UploadPath::Async
                } else {
                    UploadPath::Sync
                };
                receipt(Provider::Kimi, &format!("k{i}"), &format!("f{i}"), path)
            })
            .collect()
    }

    fn decision(kind: DecisionKind, percent: f64, samples: u64) -> DecisionRecord {
        DecisionRecord {
            at_hours: 6.0,
            stage_index: 2,
            percent_after: percent,
            kind,
            reason: "test".to_owned(),
            async_samples: samples,
            gates: vec![GateRecord {
                name: "success_rate".to_owned(),
                control: false,
                verdict: Verdict::Pass,
                value: Some(0.999),
                threshold: Some(0.98),
                interval: None,
            }],
        }
    }

    #[test]
    fn share_on_target_passes_and_off_target_fails() {
        assert!(async_share(10_000, &traffic(2_000, 205)).passed);
        assert!(!async_share(10_000, &traffic(2_000, 300)).passed);
        assert!(!async_share(10_000, &traffic(2_000, 100)).passed);
    }

    #[test]
    fn share_is_exact_at_zero_and_hundred() {
        assert!(async_share(0, &traffic(1_000, 0)).passed);
        assert!(!async_share(0, &traffic(1_000, 1)).passed);
        assert!(async_share(100_000, &traffic(1_000, 1_000)).passed);
        assert!(!async_share(100_000, &traffic(1_000, 999)).passed);
    }

    #[test]
    fn share_without_traffic_fails() {
        assert!(!async_share(50_000, &[]).passed);
    }

    #[test]
    fn a_receipt_on_the_wrong_path_fails_routing() {
        let mut records = traffic(10, 5);
        assert!(routing_follows_flag(&records).passed);
        records[0].decided_async = false;
        assert!(!routing_follows_flag(&records).passed);
    }

    #[test]
    fn a_key_that_left_the_cohort_fails_stickiness() {
        let earlier: BTreeSet<String> = ["k1".to_owned(), "k2".to_owned()].into();
        let stayed = vec![receipt(Provider::Glm, "k1", "f1", UploadPath::Async)];
        assert!(stickiness(&earlier, &stayed).passed);
        let left = vec![
            receipt(Provider::Glm, "k1", "f1", UploadPath::Async),
            receipt(Provider::Glm, "k2", "f2", UploadPath::Sync),
        ];
        let check = stickiness(&earlier, &left);
        assert!(!check.passed, "{check:?}");
        assert!(check.detail.contains("k2"));
    }

    #[test]
    fn stickiness_without_revisits_fails() {
        let earlier: BTreeSet<String> = ["k1".to_owned()].into();
        let unrelated = vec![receipt(Provider::Glm, "k9", "f9", UploadPath::Async)];
        assert!(!stickiness(&earlier, &unrelated).passed);
        assert!(stickiness(&BTreeSet::new(), &unrelated).passed);
    }

    #[test]
    fn a_lost_request_fails() {
        let records = vec![
            receipt(Provider::Kimi, "k1", "f1", UploadPath::Async),
            receipt(Provider::Kimi, "k2", "f2", UploadPath::Sync),
        ];
        let all = vec![stored(Provider::Kimi, "f1"), stored(Provider::Kimi, "f2")];
        assert!(no_lost_requests(&records, &all).passed);
        let check = no_lost_requests(&records, &all[..1]);
        assert!(!check.passed);
        assert!(check.detail.contains("f2"), "{check:?}");
    }

    #[test]
    fn a_file_on_the_wrong_provider_is_lost() {
        let records = vec![receipt(Provider::Kimi, "k1", "f1", UploadPath::Async)];
        assert!(!no_lost_requests(&records, &[stored(Provider::Glm, "f1")]).passed);
    }

    #[test]
    fn a_wrong_sha_fails() {
        let records = vec![receipt(Provider::Kimi, "k1", "f1", UploadPath::Async)];
        let mut corrupt = stored(Provider::Kimi, "f1");
        corrupt.sha256 = "bb".repeat(32);
        assert!(!no_lost_requests(&records, &[corrupt]).passed);

        let mut lying_receipt = records.clone();
        if let RequestResult::Receipt { sha256, .. } = &mut lying_receipt[0].result {
            *sha256 = "cc".repeat(32);
        }
        assert!(!no_lost_requests(&lying_receipt, &[stored(Provider::Kimi, "f1")]).passed);
    }

    #[test]
    fn a_wrong_size_fails() {
        let records = vec![receipt(Provider::Kimi, "k1", "f1", UploadPath::Async)];
        let mut short = stored(Provider::Kimi, "f1");
        short.bytes = 9;
        assert!(!no_lost_requests(&records, &[short]).passed);
    }

    #[test]
    fn a_recorded_error_is_not_lost() {
        let mut records = vec![receipt(Provider::Kimi, "k1", "f1", UploadPath::Async)];
        records[0].result = RequestResult::Error {
            message: "503".to_owned(),
        };
        assert!(no_lost_requests(&records, &[]).passed);
    }

    #[test]
    fn duplicates_and_orphans_fail() {
        let records = vec![receipt(Provider::Kimi, "k1", "f1", UploadPath::Async)];
        assert!(no_duplicates(&records, &[stored(Provider::Kimi, "f1")]).passed);
        let orphan = [stored(Provider::Kimi, "f1"), stored(Provider::Kimi, "f2")];
        assert!(!no_duplicates(&records, &orphan).passed);
        let twice = vec![records[0].clone(), records[0].clone()];
        assert!(!no_duplicates(&twice, &[stored(Provider::Kimi, "f1")]).passed);
    }

    #[test]
    fn an_error_fails_every_request_succeeded() {
        let mut records = vec![
            receipt(Provider::Kimi, "k1", "f1", UploadPath::SyncFallback),
            receipt(Provider::Kimi, "k2", "f2", UploadPath::Async),
        ];
        assert!(every_request_succeeded(&records, 1).passed);
        assert!(!every_request_succeeded(&records, 2).passed);
        records[1].result = RequestResult::Error {
            message: "boom".to_owned(),
        };
        assert!(!every_request_succeeded(&records, 1).passed);
    }

    #[test]
    fn a_hold_or_failing_gate_fails_gates_passed() {
        assert!(gates_passed(Some(&decision(DecisionKind::Advance, 10.0, 500))).passed);
        assert!(!gates_passed(Some(&decision(DecisionKind::Hold, 1.0, 500))).passed);
        let mut failing = decision(DecisionKind::Advance, 10.0, 500);
        failing.gates[0].verdict = Verdict::Fail;
        assert!(!gates_passed(Some(&failing)).passed);
        let mut inconclusive = decision(DecisionKind::Advance, 10.0, 500);
        inconclusive.gates[0].verdict = Verdict::Inconclusive;
        assert!(!gates_passed(Some(&inconclusive)).passed);
        // The control only has to be healthy: inconclusive is fine (no sync traffic at 100%), failing is not.
        let mut control = decision(DecisionKind::Complete, 100.0, 500);
        control.gates.push(GateRecord {
            name: "sync success_rate".to_owned(),
            control: true,
            verdict: Verdict::Inconclusive,
            value: None,
            threshold: Some(0.98),
            interval: None,
        });
        assert!(gates_passed(Some(&control)).passed);
        control.gates[1].verdict = Verdict::Fail;
        assert!(!gates_passed(Some(&control)).passed);
        assert!(!gates_passed(None).passed);
    }

    #[test]
    fn a_missing_rollback_fails() {
        let holds = vec![decision(DecisionKind::Hold, 10.0, 100); 3];
        assert!(!rolled_back(&holds).passed);
        let mut with_rollback = holds.clone();
        with_rollback.push(decision(DecisionKind::Rollback, 0.0, 100));
        assert!(rolled_back(&with_rollback).passed);
        // Rolled back, then someone raised it again: not a rollback that held.
        with_rollback.push(decision(DecisionKind::Advance, 1.0, 100));
        assert!(!rolled_back(&with_rollback).passed);
    }

    #[test]
    fn an_audit_without_the_gate_numbers_fails() {
        let gate = GateRecord {
            name: "async_success_rate".to_owned(),
            control: false,
            verdict: Verdict::Fail,
            value: Some(0.7),
            threshold: Some(0.98),
            interval: None,
        };
        let good = vec![AuditRollback {
            reason: "gate failed".to_owned(),
            failed_gates: vec![gate.clone()],
        }];
        assert!(audit_names_failing_gate(&good, &["success"]).passed);
        assert!(!audit_names_failing_gate(&good, &["latency"]).passed);
        let mut no_numbers = good.clone();
        no_numbers[0].failed_gates[0].value = None;
        assert!(!audit_names_failing_gate(&no_numbers, &["success"]).passed);
        assert!(!audit_names_failing_gate(&[], &["success"]).passed);
    }

    #[test]
    fn a_move_during_an_outage_fails_held_throughout() {
        let holds = vec![decision(DecisionKind::Hold, 10.0, 100); 3];
        assert!(held_throughout(&holds).passed);
        assert!(!held_throughout(&[]).passed);
        let mut rolled = holds.clone();
        rolled.push(decision(DecisionKind::Rollback, 0.0, 100));
        assert!(!held_throughout(&rolled).passed);
        let mut advanced = holds;
        advanced.push(decision(DecisionKind::Advance, 50.0, 100));
        assert!(!held_throughout(&advanced).passed);
    }

    #[test]
    fn no_progress_fails_progressed() {
        assert!(!progressed(&[decision(DecisionKind::Hold, 10.0, 1)]).passed);
        assert!(progressed(&[decision(DecisionKind::Advance, 50.0, 1)]).passed);
    }

    #[test]
    fn a_rollback_fails_no_rollback() {
        assert!(no_rollback(&[decision(DecisionKind::Hold, 10.0, 1)]).passed);
        assert!(!no_rollback(&[decision(DecisionKind::Rollback, 0.0, 1)]).passed);
    }

    #[test]
    fn a_moved_position_fails_resume() {
        let before = ControllerPosition {
            stage_index: 2,
            percent_thousandths: 10_000,
            state: "baking".to_owned(),
            bake_started: "100".to_owned(),
            consecutive_failures: 0,
        };
        assert!(resumed_in_place(&before, &before.clone()).passed);
        let mut reset = before.clone();
        reset.stage_index = 0;
        reset.percent_thousandths = 0;
        assert!(!resumed_in_place(&before, &reset).passed);
        let mut rebaked = before.clone();
        rebaked.bake_started = "200".to_owned();
        assert!(!resumed_in_place(&before, &rebaked).passed);
    }

    #[test]
    fn an_early_advance_fails_min_samples() {
        let ok = vec![
            decision(DecisionKind::Hold, 10.0, 10),
            decision(DecisionKind::Advance, 50.0, 200),
        ];
        assert!(held_for_min_samples(&ok, 100).passed);
        let early = vec![
            decision(DecisionKind::Hold, 10.0, 10),
            decision(DecisionKind::Advance, 50.0, 50),
        ];
        assert!(!held_for_min_samples(&early, 100).passed);
        let never_starved = vec![decision(DecisionKind::Advance, 50.0, 200)];
        assert!(!held_for_min_samples(&never_starved, 100).passed);
    }
}

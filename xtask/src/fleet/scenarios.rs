//! The fleet scenarios: each builds a fresh fleet, runs a rollout under load, acts on it, then checks
//! what the clients, the stand-ins, the gateways and the controller say.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use upramp_harness::FAULTS_CONTROL_PATH;
use upramp_rollout::{AuditLog, Decision, DecisionRecord, Phase, StateStore, Trigger};

use super::load::{Load, Monitor, PercentSample, RequestRecord, Targets};
use super::procs::{start_mock, Gateway, Proc, Prometheus, API_KEY};
use super::{Check, ScenarioReport, Setup};

/// A fleet scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Healthy providers: the rollout reaches 100%.
    Happy,
    /// The stand-ins fail async uploads: automatic rollback, reaching every gateway.
    AsyncFailure,
    /// Both stand-ins refuse every upload on both paths (503) for three bakes: hold as provider-wide,
    /// no rollback, then advance.
    Outage,
    /// Both stand-ins freeze (SIGSTOP) for three bakes, the other kind of provider-wide outage: hold,
    /// no rollback, then advance. Runs only when named (see [`Scenario::ALL`]).
    Hang,
    /// kill -9 of the controller mid-stage and a restart: same stage, same bake start.
    ControllerKill,
    /// kill -9 of one gateway and its restart: no false rollback.
    GatewayKill,
    /// An operator's `rollout rollback` during the run sticks.
    OperatorRollback,
    /// Prometheus killed mid-stage and restarted: hold while it is gone, then continue.
    PrometheusRestart,
    /// The controller crashes leaving a torn state file: `status` and `run` refuse it; the runbook's
    /// recovery from the audit log resumes the same stage without moving the gateways.
    CorruptState,
}

impl Scenario {
    /// Every scenario a plain run includes, in the order they run. `hang` is not among them yet: a
    /// stalled provider leaves the gateways' requests hanging past any deadline (the gateway and
    /// uploader deadline work is in progress), and after the resume the controller rolls back on the
    /// p99 ratio both paths suffered alike; `--scenario hang` shows it.
    pub const ALL: [Scenario; 8] = [
        Scenario::Happy,
        Scenario::AsyncFailure,
        Scenario::Outage,
        Scenario::ControllerKill,
        Scenario::GatewayKill,
        Scenario::OperatorRollback,
        Scenario::PrometheusRestart,
        Scenario::CorruptState,
    ];

    /// Every scenario `--scenario` accepts.
    pub const NAMED: [Scenario; 9] = [
        Scenario::Happy,
        Scenario::AsyncFailure,
        Scenario::Outage,
        Scenario::ControllerKill,
        Scenario::GatewayKill,
        Scenario::OperatorRollback,
        Scenario::PrometheusRestart,
        Scenario::CorruptState,
        Scenario::Hang,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Happy => "happy",
            Scenario::AsyncFailure => "async-failure",
            Scenario::Outage => "outage",
            Scenario::Hang => "hang",
            Scenario::ControllerKill => "controller-kill",
            Scenario::GatewayKill => "gateway-kill",
            Scenario::OperatorRollback => "operator-rollback",
            Scenario::PrometheusRestart => "prometheus-restart",
            Scenario::CorruptState => "corrupt-state",
        }
    }
}

/// How long after a controller decision every gateway must apply its percent: the gateways reload
/// the flags file on change; the monitor samples every 100 ms.
const RELOAD_BOUND: Duration = Duration::from_secs(3);

/// The stand-ins' seeds (distinct so file ids never collide across providers).
const KIMI_SEED: u64 = 11;
const GLM_SEED: u64 = 12;

/// Traffic and timing of one form (quick or full).
struct Pace {
    rate: f64,
    bake_secs: u64,
    window_secs: u64,
}

impl Pace {
    fn of(quick: bool) -> Self {
        if quick {
            Pace {
                rate: 30.0,
                bake_secs: 3,
                window_secs: 8,
            }
        } else {
            Pace {
                rate: 40.0,
                bake_secs: 8,
                window_secs: 12,
            }
        }
    }

    fn plan(&self) -> String {
        let b = self.bake_secs;
        // Thresholds a compressed plan can judge: a Wilson interval at 95% needs about 200 clean legs
        // to clear 98%, a few minutes of canary traffic here; 90% needs about 40, and a 50% async
        // failure still fails decisively. The p99 of a few dozen loopback legs on two shared cores is
        // whichever leg met a CPU spike (a Prometheus restart replaying its WAL moved it 8x): the ratio
        // limit is 10x, decisive at 20x, and the rate gates decide. The control minimum (200 by
        // default) is what a window of the quick form's 50% stage holds with room to spare (about 120
        // sync legs); Wilson at 95% puts 60 clean legs above 94%, clear of the 90% limit.
        format!(
            "failure_limit = 2\n\n[gates]\nmin_success_rate = 0.9\nmax_error_rate = 0.1\nmax_timeout_rate = 0.1\nmax_fallback_rate = 0.1\nmax_p99_ratio = 10.0\n\
             min_fail_samples = 15\ndecisive_min_samples = 40\nmin_latency_samples = 30\nmin_latency_fail_samples = 1000000\nmin_p99_excess_ms = 100\nmin_control_samples = 60\n\n\
             [[stages]]\nname = \"baseline\"\npercent = 0\nmin_bake = \"{b}s\"\nmin_async_samples = 0\n\n\
             [[stages]]\nname = \"canary\"\npercent = 25\nmin_bake = \"{b}s\"\nmin_async_samples = 30\n\n\
             [[stages]]\nname = \"half\"\npercent = 50\nmin_bake = \"{b}s\"\nmin_async_samples = 40\n\n\
             [[stages]]\nname = \"full\"\npercent = 100\nmin_bake = \"{b}s\"\nmin_async_samples = 40\n"
        )
    }
}

struct Mock {
    flavor: &'static str,
    proc: Proc,
    url: String,
}

/// One scenario's fleet.
struct World {
    dir: PathBuf,
    upramp: PathBuf,
    mocks: Vec<Mock>,
    gateways: Vec<Gateway>,
    prometheus: Prometheus,
    flags: PathBuf,
    state: PathBuf,
    pace: Pace,
    controller: Option<Proc>,
    controller_starts: usize,
    targets: Targets,
}

impl World {
    fn build(setup: &Setup, scenario: Scenario, faults: &str) -> anyhow::Result<Self> {
        let dir = setup.out.join(scenario.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let upramp = setup.upramp.clone();
        let pace = Pace::of(setup.quick);
        let (kimi, kimi_url) = start_mock(&upramp, &dir, "kimi", faults, KIMI_SEED)?;
        let (glm, glm_url) = start_mock(&upramp, &dir, "glm", faults, GLM_SEED)?;
        let flags = dir.join("flags.toml");
        std::fs::write(
            &flags,
            "# The fleet's shared flags file; `upramp rollout run` writes `rollout`.\n[async_upload]\nenabled = true\nrollout = 0\nfallback = true\nsalt = \"async_upload\"\nmax_retries = 1\ntimeout_secs = 2\n",
        )?;
        let mut gateways = Vec::new();
        for (index, (flavor, url)) in [("kimi", &kimi_url), ("kimi", &kimi_url), ("glm", &glm_url)]
            .into_iter()
            .enumerate()
        {
            gateways.push(Gateway::start(
                &upramp, &dir, index, flavor, url, &flags, None,
            )?);
        }
        let addrs: Vec<String> = gateways.iter().map(|g| g.addr.clone()).collect();
        let prometheus = Prometheus::start(&setup.prometheus, &dir, &addrs)?;
        let plan = dir.join("plan.toml");
        std::fs::write(&plan, pace.plan())?;
        let state = dir.join("rollout.json");
        let status = Command::new(&upramp)
            .args(["rollout", "init", "--state"])
            .arg(&state)
            .arg("--plan")
            .arg(&plan)
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run `upramp rollout init`")?;
        if !status.success() {
            bail!("`upramp rollout init` failed with {status}");
        }
        let targets = Arc::new(Mutex::new(gateways.iter().map(Gateway::url).collect()));
        Ok(Self {
            dir,
            upramp,
            mocks: vec![
                Mock {
                    flavor: "kimi",
                    proc: kimi,
                    url: kimi_url,
                },
                Mock {
                    flavor: "glm",
                    proc: glm,
                    url: glm_url,
                },
            ],
            gateways,
            prometheus,
            flags,
            state,
            pace,
            controller: None,
            controller_starts: 0,
            targets,
        })
    }

    fn start_controller(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.upramp);
        command
            .args(["rollout", "run", "--state"])
            .arg(&self.state)
            .arg("--flags-file")
            .arg(&self.flags)
            .args(["--prometheus", &self.prometheus.url])
            .args(["--selector", "job=\"upramp\""])
            .args(["--interval", "1s"])
            .args(["--window", &format!("{}s", self.pace.window_secs)]);
        let (proc, _) = Proc::spawn(
            "controller",
            command,
            self.dir
                .join(format!("controller-{}.log", self.controller_starts)),
            false,
        )?;
        self.controller_starts += 1;
        self.controller = Some(proc);
        Ok(())
    }

    /// Replace both stand-ins' fault plan through their control route.
    fn set_faults(&self, plan: &str) -> anyhow::Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        for mock in &self.mocks {
            let origin = origin_of(&mock.url)
                .with_context(|| format!("stand-in URL `{}` has no origin", mock.url))?;
            let response = client
                .put(format!("{origin}{FAULTS_CONTROL_PATH}"))
                .bearer_auth(API_KEY)
                .body(plan.to_owned())
                .send()
                .with_context(|| format!("cannot set the {} stand-in's faults", mock.flavor))?;
            let status = response.status();
            let text = response.text().unwrap_or_default();
            if !status.is_success() || text != plan {
                bail!(
                    "the {} stand-in answered {status} `{text}` to fault plan `{plan}`",
                    mock.flavor
                );
            }
        }
        Ok(())
    }

    fn audit_path(&self) -> PathBuf {
        let mut path = self.state.as_os_str().to_owned();
        path.push(".audit.jsonl");
        PathBuf::from(path)
    }

    fn audit(&self) -> Vec<DecisionRecord> {
        AuditLog::read(&self.audit_path()).unwrap_or_default()
    }

    /// `upramp rollout OP --state STATE ARGS...`.
    fn operator_args(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let (op, rest) = args.split_first().context("no rollout operation")?;
        Command::new(&self.upramp)
            .args(["rollout", op, "--state"])
            .arg(&self.state)
            .args(rest)
            .output()
            .with_context(|| format!("cannot run `upramp rollout {op}`"))
    }

    /// A manual operation with a reason, writing the flags file when `apply`.
    fn operator(
        &self,
        op: &str,
        reason: &str,
        apply: bool,
    ) -> anyhow::Result<std::process::Output> {
        let flags = self.flags.display().to_string();
        let mut args = vec![op, "--reason", reason];
        if apply {
            args.extend(["--flags-file", &flags]);
        }
        self.operator_args(&args)
    }

    /// The percent `rollout status --json` reports.
    fn status_percent(&self) -> Option<f64> {
        let out = self.operator_args(&["status", "--json"]).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        json["percent"].as_f64()
    }

    /// Every gateway's percent now, if all answer.
    fn targets_percent(&self) -> Option<Vec<f64>> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .ok()?;
        let urls = self.targets.lock().map(|t| t.clone()).unwrap_or_default();
        urls.iter()
            .map(|u| super::load::gateway_percent(&client, u))
            .collect()
    }

    /// Wait until every gateway shows `percent`; seconds it took.
    fn wait_for_percent(&self, percent: f64, limit: Duration) -> Option<f64> {
        let started = Instant::now();
        while started.elapsed() <= limit {
            if self
                .targets_percent()
                .is_some_and(|all| all.iter().all(|p| (p - percent).abs() < 1e-6))
            {
                return Some(started.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn phase(&self) -> Option<Phase> {
        StateStore::new(&self.state).load().ok().map(|s| s.phase)
    }

    /// Wait until the rollout bakes stage `stage` (0-based); returns its bake start.
    fn wait_for_stage(&self, stage: usize, limit: Duration) -> anyhow::Result<SystemTime> {
        let deadline = Instant::now() + limit;
        loop {
            match self.phase() {
                Some(Phase::Baking { stage: s, since }) if s == stage => return Ok(since),
                Some(Phase::RolledBack { reason, .. }) => {
                    bail!("rolled back before stage {}: {reason}", stage + 1)
                }
                Some(Phase::Completed { .. }) => bail!("completed before stage {}", stage + 1),
                _ => {}
            }
            if Instant::now() > deadline {
                bail!("stage {} not reached within {limit:?}", stage + 1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the controller to exit; returns its exit code (None: killed after `limit`).
    fn wait_controller(&mut self, limit: Duration) -> Option<i32> {
        let proc = self.controller.as_mut()?;
        match proc.wait_exit(limit) {
            Some(status) => status.code(),
            None => {
                proc.kill9();
                None
            }
        }
    }
}

/// Send SIGSTOP or SIGCONT to a process.
fn signal(proc: &Proc, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([sig, &proc.pid().to_string()])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill {sig} {} failed", proc.pid());
    }
    Ok(())
}

/// `http://HOST:PORT` of a base URL such as `http://127.0.0.1:4000/v1`.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let end = rest.find('/').map_or(url.len(), |i| i + "http://".len());
    url.get(..end)
}

/// Run one scenario from a fresh state.
pub fn run(setup: &Setup, scenario: Scenario) -> anyhow::Result<ScenarioReport> {
    let started = Instant::now();
    let faults = match scenario {
        Scenario::AsyncFailure => "500:0.5@async",
        _ => "none",
    };
    let mut world = World::build(setup, scenario, faults)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load = Load::start(
        &runtime,
        Arc::clone(&world.targets),
        world.pace.rate,
        KIMI_SEED + scenario as u64,
    );
    let load_wall = SystemTime::now();
    let load_started = load.started;
    let monitor = Monitor::start(Arc::clone(&world.targets), load_started);
    world.start_controller()?;
    let since_load = |t: SystemTime| {
        t.duration_since(load_wall)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let stage_limit = Duration::from_secs(60);
    let bake = Duration::from_secs(world.pace.bake_secs);

    let mut checks = Vec::new();
    let mut gap: Option<(f64, f64)> = None; // a window in load time where errors are expected
                                            // Shaded on the timeline: what the scenario did to the fleet, in load time.
    let mut spans: Vec<(f64, f64, String)> = Vec::new();
    let mut outage_over: Option<f64> = None;
    let expect_completed;
    match scenario {
        Scenario::Happy | Scenario::AsyncFailure => {
            expect_completed = scenario == Scenario::Happy;
        }
        Scenario::Outage => {
            // A provider-wide outage is one both paths see alike: the stand-ins refuse every upload on
            // both paths with 503 (their fault-control route, as a provider's status page would say
            // "unavailable"). The sync control fails its own gates, so the controller must hold as
            // provider-wide, never roll back or advance, and advance once the window is clean again.
            world.wait_for_stage(1, stage_limit)?;
            let from = load_started.elapsed().as_secs_f64();
            world.set_faults("503:1")?;
            std::thread::sleep(bake * 3);
            world.set_faults("none")?;
            let to = load_started.elapsed().as_secs_f64();
            // Requests already in their retries when it began or ended may fail either way.
            gap = Some((from - 1.0, to + 1.0));
            spans.push((from, to, "503 on both paths".to_owned()));
            // Until the window no longer holds the outage's failures, the verdict is still about it.
            let window = world.pace.window_secs as f64;
            let settled_by = to + window + 2.0;
            let wait = Instant::now() + Duration::from_secs_f64(window + 2.0);
            while Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(200));
            }
            let audit = world.audit();
            let judged: Vec<&DecisionRecord> = audit
                .iter()
                .filter(|r| (from..=settled_by).contains(&since_load(r.at)))
                .collect();
            let during: Vec<&&DecisionRecord> =
                judged.iter().filter(|r| since_load(r.at) <= to).collect();
            let rollbacks = judged
                .iter()
                .filter(|r| r.decision == Decision::Rollback)
                .count();
            let advances = during
                .iter()
                .filter(|r| r.decision != Decision::Hold)
                .count();
            let provider_wide = judged
                .iter()
                .filter(|r| r.reason.contains("provider-wide"))
                .count();
            checks.push(Check {
                name: "outage: holds as provider-wide, never rolls back or advances".to_owned(),
                passed: rollbacks == 0 && advances == 0 && provider_wide > 0,
                detail: format!(
                    "{} decisions in {:.1}s of outage, {} until the window cleared: {advances} not holds during it, {rollbacks} rollbacks, {provider_wide} provider-wide holds",
                    during.len(),
                    to - from,
                    judged.len() - during.len()
                ),
            });
            outage_over = Some(to);
            expect_completed = true;
        }
        Scenario::Hang => {
            world.wait_for_stage(1, stage_limit)?;
            let from = load_started.elapsed().as_secs_f64();
            for mock in &world.mocks {
                signal(&mock.proc, "-STOP")?;
            }
            std::thread::sleep(bake * 3);
            for mock in &world.mocks {
                signal(&mock.proc, "-CONT")?;
            }
            let to = load_started.elapsed().as_secs_f64();
            gap = Some((from - 1.0, to + 3.0));
            spans.push((from, to, "stand-ins stopped".to_owned()));
            let window = world.pace.window_secs as f64;
            std::thread::sleep(Duration::from_secs_f64(window + 2.0));
            let audit = world.audit();
            let judged: Vec<&DecisionRecord> = audit
                .iter()
                .filter(|r| (from..=to + window + 2.0).contains(&since_load(r.at)))
                .collect();
            let moved: Vec<String> = judged
                .iter()
                .filter(|r| r.decision != Decision::Hold)
                .map(|r| format!("{:?} at {:.1}s: {}", r.decision, since_load(r.at), r.reason))
                .collect();
            checks.push(Check {
                name: "hang: hold, never roll back or advance until the window is clean".to_owned(),
                passed: moved.is_empty(),
                detail: format!(
                    "{} decisions from the stop until the window cleared; not holds: {}",
                    judged.len(),
                    if moved.is_empty() {
                        "none".to_owned()
                    } else {
                        moved.join("; ")
                    }
                ),
            });
            outage_over = Some(to);
            expect_completed = true;
        }
        Scenario::ControllerKill => {
            let since = world.wait_for_stage(1, stage_limit)?;
            std::thread::sleep(bake / 3);
            let killed_at = load_started.elapsed().as_secs_f64();
            if let Some(c) = world.controller.as_mut() {
                c.kill9();
            }
            let before = world.audit().len();
            std::thread::sleep(Duration::from_millis(1500));
            world.start_controller()?;
            spans.push((
                killed_at,
                load_started.elapsed().as_secs_f64(),
                "controller killed".to_owned(),
            ));
            let deadline = Instant::now() + Duration::from_secs(20);
            while world.audit().len() <= before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let audit = world.audit();
            let first = audit.get(before);
            let state_now = world.phase();
            let same_since = match &state_now {
                Some(Phase::Baking { stage: 1, since: s }) => *s == since,
                // It may have finished the bake on its first tick: measured from the old start.
                Some(Phase::Baking { stage: 2, .. }) => first.is_some_and(|r| {
                    r.decision == Decision::Advance
                        && r.at.duration_since(since).unwrap_or_default() >= bake
                }),
                _ => false,
            };
            let restarted = audit
                .iter()
                .filter(|r| r.reason.starts_with("rollout started"))
                .count();
            checks.push(Check {
                name: "controller restart: same stage, same bake start".to_owned(),
                passed: first.is_some_and(|r| r.stage_index == 1) && same_since && restarted == 1,
                detail: format!(
                    "first tick after restart judged stage {}: {}; state {:?}",
                    first.map_or(0, |r| r.stage_index + 1),
                    first.map_or("none", |r| r.reason.as_str()),
                    state_now.map(|p| p.as_str())
                ),
            });
            expect_completed = true;
        }
        Scenario::GatewayKill => {
            world.wait_for_stage(1, stage_limit)?;
            std::thread::sleep(bake / 3);
            let from = load_started.elapsed().as_secs_f64();
            if let Some(p) = world.gateways[1].proc.as_mut() {
                p.kill9();
            }
            std::thread::sleep(Duration::from_secs(3));
            let (upramp, dir, flags) =
                (world.upramp.clone(), world.dir.clone(), world.flags.clone());
            world.gateways[1].restart(&upramp, &dir, &flags)?;
            gap = Some((from - 0.5, load_started.elapsed().as_secs_f64()));
            spans.push((
                from,
                load_started.elapsed().as_secs_f64(),
                "gateway 1 killed".to_owned(),
            ));
            expect_completed = true;
        }
        Scenario::OperatorRollback => {
            // Pause: the percent stays and nothing is promoted for longer than the bake.
            world.wait_for_stage(1, stage_limit)?;
            let paused = world.operator(
                "pause",
                "operator: waiting for the provider's notice",
                false,
            )?;
            let paused_at = load_started.elapsed().as_secs_f64();
            std::thread::sleep(bake + Duration::from_secs(2));
            let while_paused = world.phase();
            let resumed = world.operator("resume", "operator: notice read", false)?;
            let resumed_at = load_started.elapsed().as_secs_f64();
            spans.push((paused_at, resumed_at, "paused".to_owned()));
            let audit = world.audit();
            let promoted = audit
                .iter()
                .filter(|r| (paused_at..=resumed_at).contains(&since_load(r.at)))
                .filter(|r| r.decision == Decision::Advance)
                .count();
            let held_percent = world.targets_percent() == Some(vec![25.0; 3]);
            checks.push(Check {
                name: "pause keeps the percent and promotes nothing; resume continues".to_owned(),
                passed: paused.status.success()
                    && resumed.status.success()
                    && matches!(while_paused, Some(Phase::Paused { stage: 1, .. }))
                    && promoted == 0
                    && held_percent,
                detail: format!(
                    "pause exited {}, resume {}; state while paused {:?}; {promoted} advances in {:.1}s paused (bake {}s); every gateway at 25% on resume: {held_percent}",
                    paused.status,
                    resumed.status,
                    while_paused.as_ref().map(Phase::as_str),
                    resumed_at - paused_at,
                    world.pace.bake_secs
                ),
            });
            world.wait_for_stage(2, stage_limit)?;
            std::thread::sleep(bake / 3);
            let output = Command::new(&world.upramp)
                .args(["rollout", "rollback", "--state"])
                .arg(&world.state)
                .args(["--reason", "operator: fleet incident drill", "--flags-file"])
                .arg(&world.flags)
                .output()
                .context("cannot run `upramp rollout rollback`")?;
            // Let the controller tick several times: a stale tick must not undo the rollback.
            std::thread::sleep(Duration::from_secs(4));
            let audit = world.audit();
            let manual = audit
                .iter()
                .rposition(|r| r.trigger == Trigger::Manual && r.decision == Decision::Rollback);
            let undone = manual.map_or(usize::MAX, |i| {
                audit[i + 1..]
                    .iter()
                    .filter(|r| r.percent.as_f64() > 0.0)
                    .count()
            });
            let sticks = matches!(world.phase(), Some(Phase::RolledBack { .. }));
            checks.push(Check {
                name: "operator rollback sticks".to_owned(),
                passed: output.status.success() && sticks && undone == 0,
                detail: format!(
                    "`rollout rollback` exited {}; state {:?}; {undone} records after it above 0%",
                    output.status,
                    world.phase().map(|p| p.as_str())
                ),
            });
            // Re-apply: the controller has stopped; someone puts the fleet back at 50% by hand, and a
            // second `rollout rollback` writes 0% again.
            let stopped = world.wait_controller(Duration::from_secs(10));
            let text = std::fs::read_to_string(&world.flags)
                .with_context(|| format!("cannot read {}", world.flags.display()))?;
            std::fs::write(&world.flags, text.replace("rollout = 0", "rollout = 50"))?;
            let overridden = world.wait_for_percent(50.0, RELOAD_BOUND);
            let reapplied =
                world.operator("rollback", "operator: re-apply after a manual edit", true)?;
            let reached = world.wait_for_percent(0.0, RELOAD_BOUND);
            checks.push(Check {
                name: "a second `rollout rollback` re-applies 0% over a hand edit".to_owned(),
                passed: overridden.is_some() && reapplied.status.success() && reached.is_some(),
                detail: format!(
                    "controller exit {stopped:?}; gateways at 50% after the edit in {}; re-apply exited {}; every gateway at 0% {}",
                    overridden.map_or_else(|| "never".to_owned(), |t| format!("{t:.2}s")),
                    reapplied.status,
                    reached.map_or_else(|| "never".to_owned(), |t| format!("after {t:.2}s")),
                ),
            });
            expect_completed = false;
        }
        Scenario::CorruptState => {
            world.wait_for_stage(2, stage_limit)?;
            std::thread::sleep(bake / 3);
            let crashed_at = load_started.elapsed().as_secs_f64();
            if let Some(c) = world.controller.as_mut() {
                c.kill9();
            }
            // A torn write from a broken disk: the first half of the file.
            let good = std::fs::read(&world.state)?;
            let torn = good[..good.len() / 2].to_vec();
            std::fs::write(&world.state, &torn)?;
            let status = world.operator_args(&["status"])?;
            let run = world.operator_args(&[
                "run",
                "--flags-file",
                &world.flags.display().to_string(),
                "--prometheus",
                &world.prometheus.url.clone(),
            ])?;
            let untouched = std::fs::read(&world.state).is_ok_and(|now| now == torn);
            let refused = |o: &std::process::Output| {
                let err = String::from_utf8_lossy(&o.stderr);
                o.status.code() == Some(2)
                    && err.lines().count() == 1
                    && err.contains("is corrupt and was left untouched")
            };
            checks.push(Check {
                name: "a corrupt state file: status and run refuse it (exit 2) and leave it"
                    .to_owned(),
                passed: refused(&status) && refused(&run) && untouched,
                detail: format!(
                    "status exit {:?}, run exit {:?}: `{}`; file unchanged: {untouched}",
                    status.status.code(),
                    run.status.code(),
                    String::from_utf8_lossy(&run.stderr).trim()
                ),
            });
            // The runbook's recovery: keep the corrupt file, start a new state on the same plan and
            // audit log, advance it by hand (not applying) until it stands at the percent of the audit
            // log's last record, restart the controller.
            let audit = world.audit();
            let want = audit.last().map_or(0.0, |r| r.percent.as_f64());
            let mut aside = world.state.as_os_str().to_owned();
            aside.push(".corrupt");
            std::fs::rename(&world.state, &aside)?;
            let audit_path = world.audit_path();
            let init = Command::new(&world.upramp)
                .args(["rollout", "init", "--state"])
                .arg(&world.state)
                .arg("--plan")
                .arg(world.dir.join("plan.toml"))
                .arg("--audit")
                .arg(&audit_path)
                .output()
                .context("cannot run `upramp rollout init`")?;
            let mut advanced = Vec::new();
            while world.status_percent() < Some(want) && advanced.len() < 4 {
                let out = world.operator(
                    "advance",
                    "restore after a corrupt state file: the audit log's last record",
                    false,
                )?;
                advanced.push(out.status.success());
            }
            let restored = world.phase();
            let restored_percent = world.status_percent();
            let before = world.audit().len();
            world.start_controller()?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while world.audit().len() <= before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let recovered_at = load_started.elapsed().as_secs_f64();
            spans.push((crashed_at, recovered_at, "state corrupt".to_owned()));
            let after = world.audit();
            let first_tick = after.get(before);
            let stayed = monitor.percents_between(crashed_at, recovered_at);
            let steady = !stayed.is_empty() && stayed.iter().all(|p| (p - want).abs() < 1e-6);
            checks.push(Check {
                name: "recovered from the audit log: same stage, the gateways never moved".to_owned(),
                passed: init.status.success()
                    && advanced.iter().all(|ok| *ok)
                    && restored_percent == Some(want)
                    && first_tick.is_some_and(|r| (r.from_percent.as_f64() - want).abs() < 1e-6)
                    && steady,
                detail: format!(
                    "audit's last record at {want}%; init exited {}, {} advances; restored {:?} at {:?}%; first tick from {}; gateways read {:?}% meanwhile",
                    init.status,
                    advanced.len(),
                    restored.as_ref().map(Phase::as_str),
                    restored_percent,
                    first_tick.map_or_else(|| "none".to_owned(), |r| r.from_percent.to_string()),
                    stayed.iter().fold(Vec::<f64>::new(), |mut v, p| {
                        if !v.contains(p) {
                            v.push(*p);
                        }
                        v
                    })
                ),
            });
            expect_completed = true;
        }
        Scenario::PrometheusRestart => {
            world.wait_for_stage(1, stage_limit)?;
            std::thread::sleep(bake / 3);
            if let Some(p) = world.prometheus.proc.as_mut() {
                p.kill9();
            }
            let from = load_started.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_secs(4));
            let to = load_started.elapsed().as_secs_f64();
            world.prometheus.launch()?;
            spans.push((
                from,
                load_started.elapsed().as_secs_f64(),
                "Prometheus down".to_owned(),
            ));
            let audit = world.audit();
            let during: Vec<&DecisionRecord> = audit
                .iter()
                .filter(|r| (from + 0.5..=to).contains(&since_load(r.at)))
                .collect();
            let held = during
                .iter()
                .filter(|r| {
                    r.decision == Decision::Hold && r.reason.contains("metrics unavailable")
                })
                .count();
            checks.push(Check {
                name: "prometheus gone: every tick holds with the reason".to_owned(),
                passed: !during.is_empty() && held == during.len(),
                detail: format!(
                    "{held} of {} ticks while Prometheus was down held as `metrics unavailable`",
                    during.len()
                ),
            });
            expect_completed = true;
        }
    }

    let exit = world.wait_controller(Duration::from_secs(120));
    // The controller may exit right after its last write: give every gateway the reload bound to
    // show the final percent before the monitor stops.
    if let Some(last) = world.audit().last() {
        let want = last.percent.as_f64();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        let deadline = Instant::now() + RELOAD_BOUND + Duration::from_secs(1);
        while Instant::now() < deadline {
            let urls = world.targets.lock().map(|t| t.clone()).unwrap_or_default();
            let all = urls.iter().all(|u| {
                super::load::gateway_percent(&client, u).is_some_and(|p| (p - want).abs() < 1e-6)
            });
            if all {
                std::thread::sleep(Duration::from_millis(200)); // one more monitor sample
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let records = load.finish(&runtime)?;
    let load_ended = SystemTime::now();
    let samples = monitor.finish();
    let audit = world.audit();
    let phase = world.phase();
    let outcome = match &phase {
        Some(p) => format!(
            "{} at {}",
            p.as_str(),
            audit
                .last()
                .map_or_else(|| "?".to_owned(), |r| r.percent.to_string())
        ),
        None => "no state".to_owned(),
    };
    let final_ok = if expect_completed {
        matches!(phase, Some(Phase::Completed { .. })) && exit == Some(0)
    } else {
        matches!(phase, Some(Phase::RolledBack { .. }))
    };
    checks.insert(
        0,
        Check {
            name: if expect_completed {
                "rollout completed at 100%, no rollback"
            } else {
                "rollout rolled back to 0%"
            }
            .to_owned(),
            passed: final_ok,
            detail: format!(
                "{outcome}; controller exit {exit:?}; {} decisions",
                audit.len()
            ),
        },
    );

    if let Some(to) = outage_over {
        let advances: Vec<&DecisionRecord> = audit
            .iter()
            .filter(|r| since_load(r.at) > to && r.decision == Decision::Advance)
            .collect();
        checks.push(Check {
            name: "outage over: the rollout advances".to_owned(),
            passed: !advances.is_empty(),
            detail: match advances.first() {
                Some(first) => format!(
                    "{} advances after the stand-ins served again, the first {:.1}s after ({})",
                    advances.len(),
                    since_load(first.at) - to,
                    first.reason
                ),
                None => "no advance after the outage".to_owned(),
            },
        });
    }
    let stored = stored_files(&world.mocks)?;
    checks.extend(client_checks(&records, &stored, gap, scenario));
    let (propagation_check, rollback_secs) = propagation(&audit, &samples, since_load);
    checks.push(propagation_check);
    if scenario == Scenario::AsyncFailure {
        checks.push(Check {
            name: format!("rollback reached all three gateways within {RELOAD_BOUND:?}"),
            passed: rollback_secs.is_some_and(|t| t <= RELOAD_BOUND.as_secs_f64()),
            detail: rollback_secs.map_or_else(
                || "no rollback observed".to_owned(),
                |t| format!("{t:.2}s from the decision"),
            ),
        });
    }
    let panel = super::timeline::panel(&super::timeline::PanelInputs {
        title: format!("{}: {outcome}", scenario.name()),
        prometheus: &world.prometheus.url,
        load_wall,
        end: load_ended,
        samples: &samples,
        audit: &audit,
        spans: &spans,
    });
    let report = ScenarioReport {
        panel: Some(panel),
        scenario: scenario.name().to_owned(),
        wall_secs: started.elapsed().as_secs_f64(),
        requests: records.len(),
        outcome,
        rollback_propagation_secs: rollback_secs,
        checks,
    };
    std::fs::write(
        world.dir.join("requests.json"),
        serde_json::to_string(&records)?,
    )?;
    std::fs::write(
        world.dir.join("percents.json"),
        serde_json::to_string(&samples)?,
    )?;
    Ok(report)
}

/// A file a stand-in holds.
#[derive(Debug, Clone)]
struct Stored {
    filename: String,
    bytes: u64,
    sha256: String,
}

/// Every file the stand-ins hold, with the SHA-256 of its content route.
fn stored_files(mocks: &[Mock]) -> anyhow::Result<HashMap<String, Stored>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut out = HashMap::new();
    for mock in mocks {
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}/files?limit=100&order=asc", mock.url);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let list: serde_json::Value = client
                .get(&url)
                .bearer_auth(API_KEY)
                .send()?
                .error_for_status()?
                .json()?;
            let data = list["data"].as_array().cloned().unwrap_or_default();
            for file in &data {
                let id = file["id"].as_str().unwrap_or_default().to_owned();
                let body = client
                    .get(format!("{}/files/{id}/content", mock.url))
                    .bearer_auth(API_KEY)
                    .send()?
                    .error_for_status()?
                    .bytes()?;
                let content = if mock.flavor == "glm" {
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    v["content"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec()
                } else {
                    body.to_vec()
                };
                use sha2::Digest;
                out.insert(
                    id.clone(),
                    Stored {
                        filename: file["filename"].as_str().unwrap_or_default().to_owned(),
                        bytes: file["bytes"].as_u64().unwrap_or_default(),
                        sha256: hex::encode(sha2::Sha256::digest(&content)),
                    },
                );
                after = Some(id);
            }
            // Both stand-ins page with `after` and `limit` and answer `has_more`.
            if list["has_more"].as_bool() != Some(true) || data.is_empty() {
                break;
            }
        }
    }
    Ok(out)
}

/// The name a client asked for, from the name the gateway stored it under: the uploader inserts
/// `.u` and 16 hex digits (its per-request marker) before the extension.
fn requested_name(stored: &str) -> String {
    let bytes = stored.as_bytes();
    let mut i = 0;
    while let Some(found) = stored[i..].find(".u") {
        let start = i + found;
        let digits = stored.get(start + 2..start + 18);
        let ends = matches!(bytes.get(start + 18), None | Some(b'.'));
        if digits.is_some_and(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) && ends {
            return format!("{}{}", &stored[..start], &stored[start + 18..]);
        }
        i = start + 1;
    }
    stored.to_owned()
}

fn client_checks(
    records: &[RequestRecord],
    stored: &HashMap<String, Stored>,
    gap: Option<(f64, f64)>,
    scenario: Scenario,
) -> Vec<Check> {
    let in_gap = |r: &RequestRecord| gap.is_some_and(|(a, b)| (a..=b).contains(&r.sent_at));
    let unanswered: Vec<&RequestRecord> = records.iter().filter(|r| r.status.is_none()).collect();
    let unexplained = unanswered
        .iter()
        .filter(|r| !(scenario == Scenario::GatewayKill && in_gap(r)))
        .count();
    let errors: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.status.is_some_and(|s| !(200..300).contains(&s)))
        .collect();
    let unexpected_errors = errors.iter().filter(|r| !in_gap(r)).count();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &errors {
        *by_status.entry(r.status.unwrap_or_default()).or_default() += 1;
    }
    let successes: Vec<&RequestRecord> = records.iter().filter(|r| r.file_id.is_some()).collect();
    let mut bad_receipts = Vec::new();
    for r in &successes {
        let id = r.file_id.as_deref().unwrap_or_default();
        match stored.get(id) {
            Some(s) if s.sha256 != r.sha256 || s.bytes != r.bytes => {
                bad_receipts.push(format!("{id}: content differs"));
            }
            Some(s)
                if Some(&s.filename) != r.stored_name.as_ref()
                    || requested_name(&s.filename) != r.filename =>
            {
                bad_receipts.push(format!(
                    "{id}: stored as `{}`, the response said {:?} for `{}`",
                    s.filename, r.stored_name, r.filename
                ));
            }
            Some(_) => {}
            None => bad_receipts.push(format!("{id}: not stored")),
        }
    }
    // Two stored files of one request carry two markers on one requested name.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for s in stored.values() {
        *by_name.entry(requested_name(&s.filename)).or_default() += 1;
    }
    let duplicates = by_name.values().filter(|&&n| n > 1).count();
    let receipted: std::collections::HashSet<&str> = successes
        .iter()
        .filter_map(|r| r.file_id.as_deref())
        .collect();
    let request_by_name: HashMap<&str, &RequestRecord> =
        records.iter().map(|r| (r.filename.as_str(), r)).collect();
    let orphans: Vec<&str> = stored
        .iter()
        .filter(|(id, _)| !receipted.contains(id.as_str()))
        .filter(|(_, s)| {
            request_by_name
                .get(requested_name(&s.filename).as_str())
                .is_none_or(|r| !(r.outcome_unknown || r.status.is_none()))
        })
        .map(|(_, s)| s.filename.as_str())
        .collect();
    let async_ok = successes
        .iter()
        .filter(|r| r.path.as_deref() == Some("async"))
        .count();
    vec![
        Check {
            name: "every client request got a response".to_owned(),
            passed: unexplained == 0,
            detail: format!(
                "{} requests, {} without a response ({} while a gateway was killed)",
                records.len(),
                unanswered.len(),
                unanswered.len() - unexplained
            ),
        },
        Check {
            name: "responses are successes (errors only during an injected outage)".to_owned(),
            passed: unexpected_errors == 0,
            detail: format!(
                "{} successes ({async_ok} on the async path), errors by status {by_status:?}, {unexpected_errors} outside the fault window",
                successes.len()
            ),
        },
        Check {
            name: "every success names a stored file with the same SHA-256".to_owned(),
            passed: bad_receipts.is_empty(),
            detail: if bad_receipts.is_empty() {
                format!("{} receipts checked against {} stored files", successes.len(), stored.len())
            } else {
                format!("{} bad: {}", bad_receipts.len(), bad_receipts.iter().take(3).cloned().collect::<Vec<_>>().join("; "))
            },
        },
        Check {
            name: "no duplicates; files without a receipt only where the outcome was unknown".to_owned(),
            passed: duplicates == 0 && orphans.is_empty(),
            detail: format!(
                "{duplicates} filenames stored twice, {} unexplained files without a receipt {:?}",
                orphans.len(),
                orphans.iter().take(3).collect::<Vec<_>>()
            ),
        },
    ]
}

/// For every percent the controller applied, how long until every answering gateway showed it;
/// returns the check and the rollback's propagation time if there was one.
fn propagation(
    audit: &[DecisionRecord],
    samples: &[PercentSample],
    since_load: impl Fn(SystemTime) -> f64,
) -> (Check, Option<f64>) {
    let changes: Vec<(f64, f64, bool)> = audit
        .iter()
        .filter(|r| r.percent != r.from_percent)
        .map(|r| {
            (
                since_load(r.at),
                r.percent.as_f64(),
                r.decision == Decision::Rollback,
            )
        })
        .collect();
    let mut worst: f64 = 0.0;
    let mut late = Vec::new();
    let mut rollback = None;
    for (i, &(at, percent, is_rollback)) in changes.iter().enumerate() {
        let next = changes.get(i + 1).map_or(f64::INFINITY, |c| c.0);
        let reached = samples
            .iter()
            .filter(|s| s.at >= at && s.at < next)
            .find(|s| {
                s.percents.iter().any(Option::is_some)
                    && s.percents
                        .iter()
                        .flatten()
                        .all(|p| (p - percent).abs() < 1e-6)
            })
            .map(|s| s.at - at);
        match reached {
            Some(lag) => {
                worst = worst.max(lag);
                if lag > RELOAD_BOUND.as_secs_f64() {
                    late.push(format!("{percent}% after {lag:.2}s"));
                }
                if is_rollback {
                    rollback = Some(lag);
                }
            }
            None if next.is_finite() && next - at < RELOAD_BOUND.as_secs_f64() => {}
            None => late.push(format!(
                "{percent}% at {at:.1}s never seen on every gateway"
            )),
        }
    }
    let last_matches = match (changes.last(), samples.last()) {
        (Some(&(_, percent, _)), Some(s)) => s
            .percents
            .iter()
            .flatten()
            .all(|p| (p - percent).abs() < 1e-6),
        _ => true,
    };
    (
        Check {
            name: format!("each gateway applied the controller's percent within {RELOAD_BOUND:?}"),
            passed: late.is_empty() && last_matches,
            detail: format!(
                "{} changes, slowest {worst:.2}s{}{}",
                changes.len(),
                if late.is_empty() {
                    String::new()
                } else {
                    format!("; late: {}", late.join(", "))
                },
                if last_matches {
                    ""
                } else {
                    "; the final percent differs"
                }
            ),
        },
        rollback,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requested_name_drops_the_gateways_marker_only() {
        assert_eq!(
            requested_name("fleet-11-3.u00000000000000ab.txt"),
            "fleet-11-3.txt"
        );
        assert_eq!(requested_name("README.u0123456789abcdef"), "README");
        assert_eq!(requested_name("a.tar.u0000000000000001.gz"), "a.tar.gz");
        // Not a marker: too short, not hex, or not at an extension boundary.
        assert_eq!(requested_name("plain.txt"), "plain.txt");
        assert_eq!(requested_name("x.u12345.txt"), "x.u12345.txt");
        assert_eq!(
            requested_name("x.uzzzzzzzzzzzzzzzz.txt"),
            "x.uzzzzzzzzzzzzzzzz.txt"
        );
        assert_eq!(
            requested_name("x.u0000000000000000ab.txt"),
            "x.u0000000000000000ab.txt"
        );
    }

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            origin_of("http://127.0.0.1:4000/v1"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:4000/api/paas/v4"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:4000"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(origin_of("https://example"), None);
    }
}

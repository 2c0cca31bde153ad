//! The fleet's processes: provider stand-ins, gateways, Prometheus and the rollout controller, each a
//! real child process on loopback with its output in a log file of the scenario's directory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The environment variable carrying the stand-ins' API key to the gateways.
pub const KEY_ENV: &str = "UPRAMP_FLEET_PROVIDER_KEY";
/// The stand-ins' API key (a loopback test value, never a real secret).
pub const API_KEY: &str = "sk-fleet-loopback";

/// A child process whose stdout and stderr go to `log`, killed on drop.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `command` (stdout piped, stderr to the log); when `first_line` is set, wait up to 30 s
    /// for the first stdout line and return it. The rest of stdout is appended to the log.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: PathBuf,
        first_line: bool,
    ) -> anyhow::Result<(Self, Option<String>)> {
        let err_log =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        let out_log = log.with_extension("stdout");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() {
                let _ = tx.send(line.trim_end().to_owned());
            }
            if let Ok(mut file) = File::create(out_log) {
                let _ = std::io::copy(&mut reader, &mut file);
            }
        });
        let mut proc = Self {
            name: name.to_owned(),
            child,
            log,
        };
        if !first_line {
            return Ok((proc, None));
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if !line.is_empty() => Ok((proc, Some(line))),
            _ => {
                proc.kill9();
                bail!("{} printed no first line: {}", proc.name, proc.log_tail())
            }
        }
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait up to `limit` for it to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            self.kill9();
        }
    }
}

/// A free loopback port (probed by binding port 0 and releasing it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a loopback port")?
        .local_addr()?
        .port())
}

/// A `upramp mock` stand-in.
pub fn start_mock(
    upramp: &Path,
    dir: &Path,
    flavor: &str,
    faults: &str,
    seed: u64,
) -> anyhow::Result<(Proc, String)> {
    let mut command = Command::new(upramp);
    command.args([
        "mock",
        "--provider",
        flavor,
        "--addr",
        "127.0.0.1:0",
        "--api-key",
        API_KEY,
        "--faults",
        faults,
        "--seed",
        &seed.to_string(),
        "--max-files",
        "1000000",
    ]);
    let (proc, line) = Proc::spawn(
        &format!("{flavor} stand-in"),
        command,
        dir.join(format!("mock-{flavor}.log")),
        true,
    )?;
    let url = line.unwrap_or_default();
    if !url.starts_with("http://127.0.0.1:") {
        bail!("{flavor} stand-in printed `{url}`, not its base URL");
    }
    Ok((proc, url))
}

/// One `upramp serve` gateway instance.
pub struct Gateway {
    /// Which provider it fronts.
    pub flavor: String,
    /// The stand-in's base URL.
    pub base_url: String,
    /// `127.0.0.1:PORT`, fixed across restarts so Prometheus keeps scraping it.
    pub addr: String,
    /// The process while it runs.
    pub proc: Option<Proc>,
    index: usize,
}

impl Gateway {
    /// Start instance `index` in front of `base_url` (on `addr` when restarting).
    pub fn start(
        upramp: &Path,
        dir: &Path,
        index: usize,
        flavor: &str,
        base_url: &str,
        flags_file: &Path,
        addr: Option<&str>,
    ) -> anyhow::Result<Self> {
        let spool = dir.join(format!("spool-{index}"));
        std::fs::create_dir_all(&spool)?;
        let listen = addr.unwrap_or("127.0.0.1:0");
        let mut command = Command::new(upramp);
        command
            .args(["serve", "--listen", listen, "--provider", flavor])
            .args(["--base-url", base_url, "--key-env", KEY_ENV])
            .arg("--flags-file")
            .arg(flags_file)
            .arg("--spool-dir")
            .arg(&spool)
            .args(["--grace", "5s"])
            .env(KEY_ENV, API_KEY)
            // A pinned environment would override every controller write (see the runbook).
            .env_remove("ASYNC_UPLOAD_ROLLOUT")
            .env_remove("ASYNC_UPLOAD_ENABLED")
            .env("RUST_LOG", "warn");
        let starts = dir.read_dir().map(|d| d.count()).unwrap_or_default();
        let (proc, line) = Proc::spawn(
            &format!("gateway {index}"),
            command,
            dir.join(format!("serve-{index}-{starts}.log")),
            true,
        )?;
        let line = line.unwrap_or_default();
        let Some(bound) = line.strip_prefix("listening on http://") else {
            bail!("gateway {index} printed `{line}`, not `listening on http://ADDR`");
        };
        Ok(Self {
            flavor: flavor.to_owned(),
            base_url: base_url.to_owned(),
            addr: bound.to_owned(),
            proc: Some(proc),
            index,
        })
    }

    /// Restart a killed instance on the same address.
    pub fn restart(&mut self, upramp: &Path, dir: &Path, flags_file: &Path) -> anyhow::Result<()> {
        let again = Self::start(
            upramp,
            dir,
            self.index,
            &self.flavor,
            &self.base_url,
            flags_file,
            Some(&self.addr),
        )?;
        self.proc = again.proc;
        Ok(())
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A Prometheus server scraping the gateways every second.
pub struct Prometheus {
    /// The process while it runs.
    pub proc: Option<Proc>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    binary: PathBuf,
    dir: PathBuf,
}

impl Prometheus {
    /// Write the config for `targets` and start the server on a free port (retried if the port was
    /// taken between probing and binding), waiting until `/-/ready` answers.
    pub fn start(binary: &Path, dir: &Path, targets: &[String]) -> anyhow::Result<Self> {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: upramp\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )?;
        let mut last = String::new();
        for _ in 0..5 {
            let mut prometheus = Self {
                proc: None,
                url: String::new(),
                port: free_port()?,
                binary: binary.to_owned(),
                dir: dir.to_owned(),
            };
            prometheus.url = format!("http://127.0.0.1:{}", prometheus.port);
            match prometheus.launch() {
                Ok(()) => return Ok(prometheus),
                Err(e) if e.to_string().contains("address already in use") => last = e.to_string(),
                Err(e) => return Err(e),
            }
        }
        bail!("no free port for Prometheus: {last}")
    }

    /// Start (or restart) the process on its port with its data directory.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port));
        let n = self.dir.read_dir().map(|d| d.count()).unwrap_or_default();
        let (mut proc, _) = Proc::spawn(
            "prometheus",
            command,
            self.dir.join(format!("prometheus-{n}.log")),
            false,
        )?;
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if proc.try_exit().is_some() {
                bail!("prometheus exited: {}", proc.log_tail());
            }
            let ready = client
                .get(format!("{}/-/ready", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                self.proc = Some(proc);
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready within 60 s: {}", proc.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

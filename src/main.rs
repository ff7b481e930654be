//! The `outrigger` command: run, validate, demo, iptables.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use outrigger::config::{self, Settings};
use outrigger::runtime::Proxy;
use outrigger::telemetry::{self, LogFormat};

/// A light service-mesh sidecar proxy.
#[derive(Parser)]
#[command(name = "outrigger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (same as `run --config FILE`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Runtime worker threads (overrides `worker_threads` in the config).
    #[arg(long, global = true)]
    workers: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run,
    /// Check a config file; exit 0 when valid, 2 with every error.
    Validate {
        /// The file.
        file: PathBuf,
    },
    /// Start small upstreams on the config's loopback endpoints and the
    /// proxy in front of them, and print curl lines to try.
    Demo,
    /// Redirect this network namespace's TCP through the proxy (a pod's
    /// init step; needs NET_ADMIN). Idempotent.
    Iptables(IptablesArgs),
}

/// `outrigger iptables`: see `outrigger::iptables`.
#[derive(clap::Args)]
struct IptablesArgs {
    /// Print the rules as a shell script instead of applying them.
    #[arg(long)]
    dry_run: bool,
    /// Remove the rules instead of adding them.
    #[arg(long)]
    uninstall: bool,
    /// The proxy's UID; its own connections are not redirected.
    #[arg(long, default_value_t = 1337)]
    proxy_uid: u32,
    /// The outbound listener's port.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// The inbound listener's port.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// The admin port; inbound connections to it are not redirected.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// More inbound ports not to redirect (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    exclude_ports: Vec<u16>,
    /// Outbound destination ports not to redirect, e.g. a database's.
    #[arg(long, value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// The iptables binary (`iptables`, `iptables-nft`, `iptables-legacy`).
    #[arg(long, default_value = "iptables")]
    iptables: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Some(Command::Validate { file }) => validate(&file),
        Some(Command::Iptables(args)) => iptables(&args),
        Some(Command::Demo) => {
            let path = cli.config.unwrap_or_else(|| PathBuf::from("config/outrigger.yaml"));
            run(&path, cli.workers, true)
        }
        Some(Command::Run) | None => match cli.config {
            Some(path) => run(&path, cli.workers, false),
            None => {
                eprintln!("outrigger: no config: use `outrigger run --config FILE` (or `outrigger demo`)");
                ExitCode::from(2)
            }
        },
    }
}

fn validate(file: &Path) -> ExitCode {
    match config::load(file) {
        Ok(s) => {
            println!(
                "{}: ok ({} listeners, {} routes, {} clusters)",
                file.display(),
                s.listeners.len(),
                s.listeners.iter().map(|l| l.routes.len()).sum::<usize>(),
                s.clusters.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            ExitCode::from(2)
        }
    }
}

fn iptables(args: &IptablesArgs) -> ExitCode {
    use outrigger::iptables::{apply, script, uninstall, Redirect};
    let steps = if args.uninstall {
        uninstall()
    } else {
        Redirect {
            proxy_uid: args.proxy_uid,
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port,
            admin_port: args.admin_port,
            exclude_ports: args.exclude_ports.clone(),
            exclude_outbound_ports: args.exclude_outbound_ports.clone(),
        }
        .install()
    };
    if args.dry_run {
        print!("{}", script(&args.iptables, &steps));
        return ExitCode::SUCCESS;
    }
    match apply(&args.iptables, &steps) {
        Ok(()) => {
            tracing::info!(uninstall = args.uninstall, "iptables rules applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outrigger iptables: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Settings, ExitCode> {
    config::load(path).map_err(|errs| {
        eprintln!("{errs}");
        ExitCode::from(2)
    })
}

fn run(path: &Path, workers: Option<usize>, demo: bool) -> ExitCode {
    let settings = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let threads = workers.unwrap_or(settings.worker_threads).max(1);
    // One worker: a current-thread runtime, no work-stealing machinery or
    // cross-thread wakeups (the sidecar's common case). More: multi-thread.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = match builder.thread_name("outrigger").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("outrigger: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(settings, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outrigger: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    if demo {
        let started = outrigger::demo::start_upstreams(&settings).await?;
        eprintln!("demo upstreams on {started:?}");
    }
    let proxy: Arc<Proxy> = Proxy::start(settings.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if demo {
        eprintln!("\nOutrigger is running. Try:\n");
        for line in outrigger::demo::curl_lines(&settings) {
            eprintln!("  {line}");
        }
        eprintln!("  curl -s http://{}/metrics | grep outrigger_requests_total", proxy.admin_addr());
        eprintln!("  curl -s http://{}/clusters\n\nCtrl-C stops it.\n", proxy.admin_addr());
    }
    tokio::spawn(config::reload::on_sighup(Arc::clone(&proxy)));
    wait_for_signal().await;
    proxy.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

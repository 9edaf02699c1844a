use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use doorbell_bridge::config::Config;
use doorbell_bridge::demo::{DemoOptions, DemoTuning};
use doorbell_bridge::error::ErrorKind;
use doorbell_bridge::supervisor;

/// The add-on's options file, in the add-on data directory (`/data`).
const OPTIONS_FILE: &str = "options.json";

#[derive(Parser)]
#[command(name = "doorbell-bridge", version, about = "Local bridge for the EZVIZ DB1 / Hikvision DS-HD1 doorbell")]
struct Cli {
    /// Configuration file (YAML). Without it, /data/options.json (the add-on's options).
    #[arg(long, global = false)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole bridge against a built-in simulated doorbell on loopback.
    Demo {
        #[arg(long, default_value_t = 8565)]
        http_port: u16,
        #[arg(long, default_value_t = 8564)]
        rtsp_port: u16,
        /// Simulator's control port; its RTSP and CoIoT use the next two ports.
        #[arg(long, default_value_t = 8580)]
        sim_port: u16,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Shortest time between two rings (default: the configuration's ring.min_gap_ms).
        #[arg(long)]
        ring_min_gap_ms: Option<u64>,
        /// Loopback clients need the API token too.
        #[arg(long)]
        require_token: bool,
        /// The simulated doorbell offers no audio backchannel (talk is then unsupported).
        #[arg(long)]
        no_backchannel: bool,
        /// Seconds a ring clip runs after the press (default: the configuration's clips.post_roll_secs).
        #[arg(long)]
        clip_post_roll_secs: Option<u64>,
    },
    /// Validate a configuration file: exit 0, or print every problem and exit 2.
    CheckConfig { path: PathBuf },
    /// Exit 0 when the bridge's /healthz answers (the container's HEALTHCHECK).
    Healthcheck,
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(unix)]
type Term = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Term = ();

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal(term: &mut Term) {
    #[cfg(unix)]
    if let Some(term) = term.as_mut() {
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        return;
    }
    let _ = term;
    let _ = tokio::signal::ctrl_c().await;
}

/// First Ctrl-C or SIGTERM (how the Supervisor stops an add-on) drains; a second one of either
/// exits at once.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term: Term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        #[cfg(not(unix))]
        let mut term: Term = ();
        stop_signal(&mut term).await;
        eprintln!("stopping… (send SIGTERM or press Ctrl-C again to exit at once)");
        t.cancel();
        stop_signal(&mut term).await;
        eprintln!("exiting at once");
        std::process::exit(1);
    });
    token
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|p| {
        eprintln!("{}: {p}", path.display());
        ExitCode::from(2)
    })
}

fn exit_for(e: &doorbell_bridge::error::Error) -> ExitCode {
    eprintln!("error: {}", e.chain());
    ExitCode::from(if e.kind() == ErrorKind::Config { 2 } else { 1 })
}

fn addon_options() -> PathBuf {
    supervisor::addon_data_dir().join(OPTIONS_FILE)
}

/// The configuration file and whether it is the add-on's options.
fn config_path(given: Option<&Path>) -> Option<(PathBuf, bool)> {
    match given {
        Some(p) => Some((p.to_path_buf(), false)),
        None => {
            let p = addon_options();
            p.exists().then_some((p, true))
        }
    }
}

/// GET /healthz on the bridge's own HTTP port, read from the same configuration it runs with.
async fn healthcheck(given: Option<&Path>) -> ExitCode {
    let Some((path, _)) = config_path(given) else {
        eprintln!("healthcheck: no configuration");
        return ExitCode::from(2);
    };
    let cfg = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let host = supervisor::advertised_host(cfg.server.bind);
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("http://{host}:{}/healthz", cfg.server.http_port);
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(_) => return ExitCode::from(1),
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("healthcheck: {url} answered {}", r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

/// glibc's allocator, tuned for a long-running process with bursts of large buffers (a keyframe
/// decoder and its 1536x2048 picture per ring): by default glibc raises its mmap threshold after
/// the first large free, so later large buffers land in the heap and are never given back (a
/// burst of 50 rings left RSS at ~100 MB). A fixed threshold keeps them mmapped and returned at
/// once; two arenas keep the blocking threads from each holding their own.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { path }) = &cli.command {
        return match Config::load(path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(p) => {
                print!("{}: {p}", path.display());
                ExitCode::from(2)
            }
        };
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        match cli.command {
            Some(Command::Healthcheck) => healthcheck(cli.config.as_deref()).await,
            Some(Command::Demo {
                http_port,
                rtsp_port,
                sim_port,
                data_dir,
                ring_min_gap_ms,
                require_token,
                no_backchannel,
                clip_post_roll_secs,
            }) => {
                init_logging("info");
                let token = shutdown_on_signals();
                let opts = DemoOptions { http_port, rtsp_port, sim_port, data_dir };
                let tuning = DemoTuning { ring_min_gap_ms, require_token, no_backchannel, clip_post_roll_secs };
                match doorbell_bridge::demo::run_tuned(opts, tuning, token).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => exit_for(&e),
                }
            }
            Some(Command::CheckConfig { .. }) => unreachable!("handled above"),
            None => {
                let Some((path, addon)) = config_path(cli.config.as_deref()) else {
                    eprintln!(
                        "error: no configuration: give --config PATH (YAML), or run as the Home Assistant add-on \
                         (which provides {}). Try `doorbell-bridge demo` to see it work.",
                        addon_options().display()
                    );
                    return ExitCode::from(2);
                };
                let mut cfg = match load(&path) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                init_logging(&cfg.log_level);
                let data_dir = cfg.data_dir.clone().unwrap_or_else(|| {
                    if addon {
                        supervisor::addon_data_dir()
                    } else {
                        path.parent().unwrap_or(Path::new(".")).join("data")
                    }
                });
                let sup = supervisor::Supervisor::from_env();
                if let Some(sup) = &sup {
                    supervisor::prepare(sup, &mut cfg).await;
                }
                let token = shutdown_on_signals();
                let app = match doorbell_bridge::App::build(cfg, data_dir).await {
                    Ok(a) => a,
                    Err(e) => return exit_for(&e),
                };
                tracing::info!("HTTP API on http://{}", app.http_addr());
                if let Some(sup) = sup {
                    let host = supervisor::advertised_host(app.config.server.bind);
                    let payload = supervisor::discovery_payload(
                        &host,
                        app.http_addr().port(),
                        app.rtsp_addr().port(),
                        &app.access,
                        &app.config.doorbell.name,
                    );
                    tracing::info!(
                        "credentials the bridge generated (API token, RTSP login) are kept in {}; Home Assistant \
                         receives them by discovery, other viewers need the ones you set in the options",
                        app.access.credentials_path.display()
                    );
                    let t = token.clone();
                    tokio::spawn(async move { sup.announce_with_retry(payload, t).await });
                }
                match app.run(token).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => exit_for(&e),
                }
            }
        }
    })
}

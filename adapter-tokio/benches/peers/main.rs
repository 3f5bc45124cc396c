//! wharf against its peers, in one run, as ratios.
//!
//! ```sh
//! cargo bench -p wharf-tokio --bench peers
//! WHARF_BENCH_RUNS=7 WHARF_BENCH_SECS=2 cargo bench -p wharf-tokio --bench peers
//! ```
//!
//! Settings (environment): `WHARF_BENCH_RUNS` runs per case (default 3;
//! use ≥ 7 for claims: noise between runs is ±10–30 % on shared machines),
//! `WHARF_BENCH_SECS` seconds measured per run (default 0.5),
//! `WHARF_BENCH_IDLE` idle connections (default 10,000, bounded by the file
//! limit), `WHARF_BENCH_HS_PARALLEL` handshakes in flight (default 16),
//! `WHARF_BENCH_DEFLATE_IDLE` connections in the `deflate` section's memory
//! table (default 1,000, bounded by the file limit: each holds its zlib
//! state there), `WHARF_BENCH_SECTIONS` a comma list of
//! `echo,idle,handshake,deflate,core` (default all), `WHARF_BENCH_CASES` a comma
//! list of case indexes 0–4 (default all; the echo, deflate and core
//! sections),
//! `WHARF_BENCH_SERVERS` a comma list of servers to start (default all:
//! `wharf-mio,wharf-tokio,tokio-tungstenite,fastwebsockets,tokio-websockets,floor`).
//!
//! Profiles: with `WHARF_BENCH_SERVERS` set, the echo section also prints
//! how many messages each server echoed in all, so that an instruction
//! count of its thread (valgrind's callgrind with `--separate-threads=yes`;
//! each server thread is named `server-<slot>`) divides into a cost per
//! message: `profile.sh` in this folder does that. `BENCHMARKS.md` at the
//! workspace root describes every section's method and has the commands.
//!
//! `deflate`: wharf's servers with permessage-deflate negotiated against the
//! same servers without it, on a compressible payload: echo throughput,
//! bytes on the wire, and memory per connection (see `deflate.rs`).
//!
//! `core`: the server `Connection` alone, in memory on one thread, against
//! a bare rustls session echoing the same frames: the server's own time and
//! allocations per message, without the kernel and the load client that
//! dominate the loopback tables (see `inmemory.rs`).
//!
//! Every server runs on one thread pinned to core 0; the load client is the
//! main thread, pinned to core 1. See each module for what it does.

mod alloc;
mod client;
mod deflate;
mod inmemory;
mod servers;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use client::Error;
use servers::{Kind, Running};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// The echo cases: (connections, message bytes).
const CASES: [(usize, usize); 5] = [
    (100, 20),
    (10, 1024),
    (200, 16 * 1024),
    (10, 64 * 1024),
    (2, 1024 * 1024),
];

struct Settings {
    runs: usize,
    secs: f64,
    idle: usize,
    deflate_idle: usize,
    hs_parallel: usize,
    sections: Vec<String>,
    cases: Vec<usize>,
    /// Servers to start; empty: all.
    servers: Vec<String>,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let list = |name: &str, default: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_else(|_| default.to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Settings {
            runs: env("WHARF_BENCH_RUNS", 3usize).max(1),
            secs: env("WHARF_BENCH_SECS", 0.5f64).max(0.05),
            idle: env("WHARF_BENCH_IDLE", 10_000usize),
            deflate_idle: env("WHARF_BENCH_DEFLATE_IDLE", 1_000usize),
            hs_parallel: env("WHARF_BENCH_HS_PARALLEL", 16usize).max(1),
            sections: list("WHARF_BENCH_SECTIONS", "echo,idle,handshake,deflate,core"),
            cases: list("WHARF_BENCH_CASES", "0,1,2,3,4")
                .iter()
                .filter_map(|c| c.parse().ok())
                .filter(|&c| c < CASES.len())
                .collect(),
            servers: list("WHARF_BENCH_SERVERS", ""),
        }
    }

    /// Whether `kind`'s servers are started (`WHARF_BENCH_SERVERS`).
    fn starts(&self, kind: Kind) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s == kind.key())
    }

    fn section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }
}

/// Median, min and max of some samples.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(samples: &[f64]) -> Option<Stat> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        };
        Some(Stat {
            median,
            min: s[0],
            max: s[s.len() - 1],
        })
    }

    /// The spread as "−a/+b %" around the median.
    fn spread(&self) -> String {
        if self.median == 0.0 {
            return "-".into();
        }
        format!(
            "-{:.0}/+{:.0}%",
            (self.median - self.min) / self.median * 100.0,
            (self.max - self.median) / self.median * 100.0
        )
    }
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn print_machine(settings: &Settings) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown", str::trim);
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "n/a".into())
    };
    println!("# wharf vs peers");
    println!(
        "cpu: {model}, {} cores; governor: {}; load average: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        read("/proc/loadavg"),
    );
    println!(
        "servers: one thread each, pinned to core 0; load client: main thread, pinned to core 1"
    );
    println!(
        "runs per case: {} (WHARF_BENCH_RUNS), {} s measured per run (WHARF_BENCH_SECS); median quoted, spread = min/max vs median",
        settings.runs, settings.secs
    );
    println!("open files limit: {}", open_files_limit());
    println!();
}

/// One server of each kind, plain and TLS.
struct Fleet {
    plain: Vec<(Kind, Running)>,
    tls: Vec<(Kind, Running)>,
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` / `--list`: nothing to test here.
        return;
    }
    let settings = Settings::from_env();
    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
    if let Some(unknown) = settings
        .servers
        .iter()
        .find(|s| !known.contains(&s.as_str()))
    {
        eprintln!(
            "WHARF_BENCH_SERVERS: no server named {unknown:?}; the names are {}",
            known.join(",")
        );
        std::process::exit(2);
    }
    print_machine(&settings);
    assert!(alloc::pin(1), "pin the load client to core 1");
    let tls = tls::Tls::new();
    let mut slot = 0;
    let mut fleet = Fleet {
        plain: vec![],
        tls: vec![],
    };
    for kind in Kind::ALL {
        if settings.starts(kind) {
            fleet.plain.push((kind, servers::start(kind, None, slot)));
            fleet
                .tls
                .push((kind, servers::start(kind, Some(&tls), slot + 1)));
        }
        slot += 2;
    }
    // Started only for their section: compression on in their config.
    let deflate_servers = settings
        .section("deflate")
        .then(|| deflate::Servers::start(slot));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        if settings.section("echo") {
            echo_section(&settings, &fleet, &tls).await;
        }
        if settings.section("idle") {
            idle_section(&settings, &fleet, &tls).await;
        }
        if settings.section("handshake") {
            handshake_section(&settings, &fleet, &tls).await;
        }
        if let Some(servers) = &deflate_servers {
            deflate::section(&settings, &fleet, servers).await;
        }
    });
    if settings.section("core") {
        inmemory::section(&settings, &tls);
    }
    // The servers run forever on their threads.
    std::process::exit(0);
}

/// Per server: its runs' figures, first error.
#[derive(Default)]
struct EchoSamples {
    rate: Vec<f64>,
    allocs: Vec<f64>,
    /// Server thread, then load client: CPU use (user + system), and the
    /// user-space part alone.
    cpu: [Vec<f64>; 2],
    user: [Vec<f64>; 2],
    error: Option<String>,
}

/// One echo run's figures.
struct EchoRun {
    msgs_per_s: f64,
    allocs_per_msg: f64,
    /// Server thread, then load client: CPU use, and its user-space part.
    cpu: [f64; 2],
    user: [f64; 2],
    /// Messages echoed in the whole run, warm-up included.
    total: u64,
}

/// Waits (at most 20 s) for the load's connection tasks, once told to stop;
/// the first error any of them met, or "stalled".
pub(crate) async fn join_load(
    tasks: &mut tokio::task::JoinSet<Result<(), Error>>,
) -> Result<(), Error> {
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                first_error.get_or_insert(e.to_string());
            }
        }
        first_error
    })
    .await;
    match joined {
        Err(_) => Err("the echo stalled".into()),
        Ok(Some(e)) => Err(e.into()),
        Ok(None) => Ok(()),
    }
}

async fn echo_run(
    server: Running,
    tls: Option<&tls::Tls>,
    ws: bool,
    (conns, size): (usize, usize),
    secs: f64,
) -> Result<EchoRun, Error> {
    let (frame, ws_expect) = client::masked_frame(size);
    let expect = if ws { ws_expect } else { frame.len() };
    let opened = client::open_many(server.addr, tls, ws, conns, 50).await?;
    let me = servers::this_tid();
    let mut marks = Vec::with_capacity(2);
    let load = client::run_load(
        opened,
        &frame,
        expect,
        Duration::from_secs_f64((secs / 4.0).max(0.1)),
        Duration::from_secs_f64(secs),
        || {
            marks.push((
                alloc::allocs(server.slot),
                servers::cpu_split(server.tid),
                servers::cpu_split(me),
            ))
        },
    )?;
    let [(a0, cpu0, me0), (a1, cpu1, me1)] = marks[..] else {
        unreachable!("the load loop marks the window's start and end")
    };
    let elapsed = load.window.as_secs_f64();
    let msgs = load.in_window.max(1) as f64;
    // Ticks of 10 ms, as a share of the window.
    let share = |ticks: u64| ticks as f64 / 100.0 / elapsed;
    Ok(EchoRun {
        msgs_per_s: load.in_window as f64 / elapsed,
        allocs_per_msg: (a1 - a0) as f64 / msgs,
        cpu: [
            share(cpu1.0 + cpu1.1 - cpu0.0 - cpu0.1),
            share(me1.0 + me1.1 - me0.0 - me0.1),
        ],
        user: [share(cpu1.0 - cpu0.0), share(me1.0 - me0.0)],
        total: load.total,
    })
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_size(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// Prints one table's rows: per kind, its median and spread, and the
/// ratios (÷ best peer, ÷ floor) of the medians.
fn print_rows(
    rows: &[(Kind, bool, Option<Stat>, String, String)],
    unit: &str,
    higher_better: bool,
) {
    let best_peer = rows
        .iter()
        .filter(|r| r.0.is_peer())
        .filter_map(|r| r.2.map(|s| s.median))
        .fold(None, |best: Option<f64>, m| {
            Some(match best {
                None => m,
                Some(b) if higher_better => b.max(m),
                Some(b) => b.min(m),
            })
        });
    let floor = rows
        .iter()
        .find(|r| r.0 == Kind::Floor)
        .and_then(|r| r.2.map(|s| s.median));
    println!(
        "  {:<20} {:>10} {:>12} {:>9} {:>9}  notes",
        "server", unit, "spread", "÷peer", "÷floor"
    );
    for (kind, tls, stat, extra, notes) in rows {
        let name = kind.name(*tls);
        let Some(stat) = stat else {
            println!(
                "  {name:<20} {:>10} {:>12} {:>9} {:>9}  {notes}",
                "error", "", "", ""
            );
            continue;
        };
        let ratio = |base: Option<f64>| {
            base.filter(|b| *b > 0.0)
                .map_or("-".to_owned(), |b| format!("{:.2}", stat.median / b))
        };
        let vs_peer = if kind.is_wharf() {
            ratio(best_peer)
        } else {
            String::new()
        };
        let vs_floor = if *kind == Kind::Floor {
            String::new()
        } else {
            ratio(floor)
        };
        println!(
            "  {name:<20} {:>10} {:>12} {vs_peer:>9} {vs_floor:>9}  {extra}{notes}",
            fmt_rate(stat.median),
            stat.spread(),
        );
    }
}

async fn echo_section(settings: &Settings, fleet: &Fleet, tls: &tls::Tls) {
    println!("## Echo throughput (messages echoed per second, one in flight per connection)");
    println!("   allocs/msg: server-thread allocations per echoed message in the measured window");
    println!("   cpu: user + system time of the server thread and of the load client (main");
    println!("   thread) in the window, from /proc (10 ms ticks), and (user) the part spent in");
    println!("   user space, the rest being system calls; loopback TCP work done in");
    println!("   softirq context is not in it. Far below 100% on both: the run was bound by");
    println!("   wake-up latency or by other processes on the cores (see the load average)");
    for &case in &settings.cases {
        let (conns, size) = CASES[case];
        for use_tls in [false, true] {
            let servers = if use_tls { &fleet.tls } else { &fleet.plain };
            let mut samples: Vec<EchoSamples> =
                servers.iter().map(|_| EchoSamples::default()).collect();
            let mut totals = vec![0u64; servers.len()];
            // Interleaved: run r of every server, then run r + 1, so drift
            // on the machine spreads over all servers alike.
            for _ in 0..settings.runs {
                for (i, (kind, server)) in servers.iter().enumerate() {
                    let t = use_tls.then_some(tls);
                    match echo_run(
                        *server,
                        t,
                        *kind != Kind::Floor,
                        (conns, size),
                        settings.secs,
                    )
                    .await
                    {
                        Ok(run) => {
                            let s = &mut samples[i];
                            s.rate.push(run.msgs_per_s);
                            s.allocs.push(run.allocs_per_msg);
                            for side in 0..2 {
                                s.cpu[side].push(run.cpu[side]);
                                s.user[side].push(run.user[side]);
                            }
                            totals[i] += run.total;
                        }
                        Err(e) => {
                            samples[i].error.get_or_insert(e.to_string());
                        }
                    }
                    // Let the server finish closing the last run's connections.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            println!();
            println!(
                "### {} × {} {}",
                conns,
                fmt_size(size),
                if use_tls {
                    "wss (TLS 1.3)"
                } else {
                    "ws (plain)"
                }
            );
            let rows: Vec<_> = servers
                .iter()
                .zip(&samples)
                .map(|((kind, _), samples)| {
                    let stat = Stat::of(&samples.rate);
                    let pct = |v: &[f64]| Stat::of(v).map_or(0.0, |s| s.median * 100.0);
                    let extra = match (stat, Stat::of(&samples.allocs)) {
                        (Some(s), Some(a)) => format!(
                            "{:>8.1} MB/s  {:>6.2} allocs/msg  cpu {:>3.0}% (user {:>2.0}%), \
                             client {:>3.0}% (user {:>2.0}%)",
                            s.median * size as f64 / 1e6,
                            a.median,
                            pct(&samples.cpu[0]),
                            pct(&samples.user[0]),
                            pct(&samples.cpu[1]),
                            pct(&samples.user[1]),
                        ),
                        _ => String::new(),
                    };
                    let notes = samples
                        .error
                        .as_ref()
                        .map_or(String::new(), |e| format!("  ({e})"));
                    (*kind, use_tls, stat, extra, notes)
                })
                .collect();
            print_rows(&rows, "msgs/s", true);
            if !settings.servers.is_empty() {
                for ((kind, server), total) in servers.iter().zip(&totals) {
                    println!(
                        "  {}: {total} messages echoed in all runs (thread server-{})",
                        kind.name(use_tls),
                        server.slot
                    );
                }
            }
        }
    }
    println!();
}

async fn idle_section(settings: &Settings, fleet: &Fleet, tls: &tls::Tls) {
    // Two descriptors per connection (client and server in this process),
    // and some to spare.
    let limit = open_files_limit();
    let n = settings.idle.min(limit.saturating_sub(512) / 2).max(1);
    println!(
        "## Memory per idle wss connection: {n} connections{} open after the handshake",
        if n < settings.idle {
            format!(
                " (of {} asked: the open files limit is {limit})",
                settings.idle
            )
        } else {
            String::new()
        }
    );
    println!(
        "   server-thread heap bytes (counting allocator) after − before, ÷ connections; one run"
    );
    println!(
        "  {:<20} {:>12} {:>9} {:>9}  after close (bytes/conn left)",
        "server", "bytes/conn", "÷peer", "÷floor"
    );
    let mut results = vec![];
    for (kind, server) in &fleet.tls {
        let before = alloc::live(server.slot);
        let ws = *kind != Kind::Floor;
        let result = client::open_many(server.addr, Some(tls), ws, n, 64).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = alloc::live(server.slot);
        let ok = result.is_ok();
        let err = result.as_ref().err().map(|e| e.to_string());
        drop(result);
        // Let the server notice every close.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let closed = alloc::live(server.slot);
        let per = (after - before) as f64 / n as f64;
        let left = (closed - before) as f64 / n as f64;
        results.push((*kind, ok.then_some(per), left, err));
    }
    let best_peer = results
        .iter()
        .filter(|r| r.0.is_peer())
        .filter_map(|r| r.1)
        .fold(f64::INFINITY, f64::min);
    let floor = results
        .iter()
        .find(|r| r.0 == Kind::Floor)
        .and_then(|r| r.1);
    for (kind, per, left, err) in &results {
        let name = kind.name(true);
        match per {
            None => println!(
                "  {name:<20} {:>12}  ({})",
                "error",
                err.as_deref().unwrap_or("")
            ),
            Some(per) => {
                let vs_peer = if kind.is_wharf() && best_peer.is_finite() {
                    format!("{:.2}", per / best_peer)
                } else {
                    String::new()
                };
                let vs_floor = match floor {
                    Some(f) if *kind != Kind::Floor && f > 0.0 => format!("{:.2}", per / f),
                    _ => String::new(),
                };
                println!(
                    "  {name:<20} {:>12.0} {vs_peer:>9} {vs_floor:>9}  {left:.0}",
                    per
                );
            }
        }
    }
    println!();
}

async fn handshake_section(settings: &Settings, fleet: &Fleet, tls: &tls::Tls) {
    println!(
        "## Handshakes per second: TCP + TLS 1.3 (full, no resumption) + WebSocket upgrade, {} in flight",
        settings.hs_parallel
    );
    println!("   floor: TCP + TLS 1.3 and one echoed byte on the raw rustls server");
    println!("   note: the client's side of a handshake costs about as much CPU as the server's,");
    println!("   so the one-core client may be the limit: equal rates then say little");
    println!("   cpu: user + system time of the server thread in the window");
    let mut samples: Vec<(Vec<f64>, Vec<f64>, Option<String>)> =
        fleet.tls.iter().map(|_| (vec![], vec![], None)).collect();
    for _ in 0..settings.runs {
        for (i, (kind, server)) in fleet.tls.iter().enumerate() {
            match handshake_run(*server, tls, *kind != Kind::Floor, settings).await {
                Ok((rate, cpu)) => {
                    samples[i].0.push(rate);
                    samples[i].1.push(cpu);
                }
                Err(e) => {
                    samples[i].2.get_or_insert(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let rows: Vec<_> = fleet
        .tls
        .iter()
        .zip(&samples)
        .map(|((kind, _), (rate, cpu, err))| {
            let extra =
                Stat::of(cpu).map_or(String::new(), |c| format!("cpu {:>3.0}%", c.median * 100.0));
            let notes = err.as_ref().map_or(String::new(), |e| format!("  ({e})"));
            (*kind, true, Stat::of(rate), extra, notes)
        })
        .collect();
    print_rows(&rows, "hs/s", true);
    println!();
}

async fn handshake_run(
    server: Running,
    tls: &tls::Tls,
    ws: bool,
    settings: &Settings,
) -> Result<(f64, f64), Error> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let failure: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let worker = || async {
        while !stop.load(Ordering::Relaxed) {
            match client::handshake_once(server.addr, tls, ws).await {
                Ok(()) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e.to_string());
                    return;
                }
            }
        }
    };
    let measure = async {
        tokio::time::sleep(Duration::from_secs_f64((settings.secs / 4.0).max(0.1))).await;
        let (c0, cpu0, t0) = (
            count.load(Ordering::Relaxed),
            servers::cpu_ticks(server.tid),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs_f64(settings.secs)).await;
        let (c1, cpu1, t1) = (
            count.load(Ordering::Relaxed),
            servers::cpu_ticks(server.tid),
            Instant::now(),
        );
        stop.store(true, Ordering::Relaxed);
        let elapsed = (t1 - t0).as_secs_f64();
        (
            (c1 - c0) as f64 / elapsed,
            (cpu1 - cpu0) as f64 / 100.0 / elapsed,
        )
    };
    let workers = futures::future::join_all((0..settings.hs_parallel).map(|_| worker()));
    let (result, _) = tokio::join!(measure, workers);
    if let Some(e) = failure.into_inner() {
        return Err(e.into());
    }
    Ok(result)
}

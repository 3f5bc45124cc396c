//! The `deflate` section: wharf's servers with permessage-deflate (RFC 7692)
//! negotiated, against the same servers without it, on plain `ws`. The
//! peers do not compress, so only wharf is here.
//!
//! The servers: one wharf-mio and one wharf-tokio echo server with
//! `Config.deflate = Some(DeflateConfig::default())` (started for this
//! section only), and for "off" the plain servers of the echo section
//! (compression off, the default).
//!
//! The payload is text-like: JSON records with the same keys and numbers
//! from a pseudo-random generator, sent as binary messages. The load client
//! stays pre-built. It offers `permessage-deflate;
//! client_no_context_takeover`, so each message it sends is compressed on
//! its own and one compressed, masked frame is valid at any point of any
//! connection: the frames are built once per case (flate2 raw deflate with
//! the backend wharf-core uses, at the servers' level, sync flush, the
//! trailing `00 00 ff ff` stripped, RSV1 set). The server compresses its
//! echoes with context takeover (the client does not ask otherwise), so an
//! identical message each time would come back as a few bytes of
//! back-references into the previous one: the client sends distinct
//! payloads in rotation, enough of them to cover twice the servers'
//! LZ77 window before one repeats.
//!
//! Replies are counted by parsing frame headers (a message ends with a data
//! frame with FIN set); payloads are skipped, except each connection's first
//! echo, which is inflated (when compressed) and compared with the message
//! sent, so that every figure is for a correct echo.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_core::DeflateConfig;

use crate::client::{self, Error};
use crate::servers::{self, Kind, Running};
use crate::{alloc, fmt_rate, fmt_size, open_files_limit, Settings, Stat, CASES};

/// The upgrade request offering permessage-deflate. The client asks no
/// window limit, so the server may not limit the client's window either
/// (RFC 7692 §7.1.2.2): the client compresses with 15 bits.
const OFFER: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n";

/// The same request without the offer.
const NO_OFFER: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// The end of a sync flush, stripped from each compressed message and put
/// back to inflate it (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The masking key of every client frame (as in the echo section's frames).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// First byte of a binary frame with FIN set.
const FIN_BINARY: u8 = 0x82;

/// RSV1 in a frame's first byte: "Per-Message Compressed" (RFC 7692 §6).
const RSV1: u8 = 0x40;

/// Read buffer of the echo loop.
const READ_BUF: usize = 256 * 1024;

/// Payload of the message each connection exchanges in the memory table.
const MEMORY_MESSAGE: usize = 1024;

/// The wharf servers with permessage-deflate enabled.
pub(crate) struct Servers {
    on: Vec<(Kind, Running)>,
}

impl Servers {
    /// Starts wharf-mio's and wharf-tokio's, from counting slot `first_slot`.
    pub(crate) fn start(first_slot: usize) -> Servers {
        let on = [Kind::WharfMio, Kind::WharfTokio]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| (kind, servers::start_deflate(kind, first_slot + i)))
            .collect();
        Servers { on }
    }
}

/// `len` bytes of JSON records: the same keys in every record, the numbers
/// from a xorshift generator seeded with `seed`, so that no two records and
/// no two seeds' payloads are the same.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = String::with_capacity(len + 160);
    let mut seq = seed * 1_000_003;
    while s.len() < len {
        let r = next();
        let _ = writeln!(
            s,
            "{{\"seq\":{seq},\"user\":\"user-{}\",\"price\":{}.{:02},\"qty\":{},\"side\":\"{}\",\"ts\":{}}}",
            r % 10_000,
            100 + (r >> 14) % 900,
            (r >> 24) % 100,
            1 + (r >> 32) % 500,
            if r >> 63 == 0 { "buy" } else { "sell" },
            1_700_000_000_000 + seq * 37 + (r >> 40) % 1000,
        );
        seq += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

/// `payload` compressed on its own as a permessage-deflate message: raw
/// deflate at `level`, a sync flush, its `00 00 ff ff` stripped.
fn compress(payload: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    // Room for the worst case (stored blocks: 5 bytes per 64 KiB) and the
    // flush, so one call does it all.
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 1000 + 64);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .expect("deflate with input and output room does not fail");
    assert_eq!(c.total_in(), payload.len() as u64, "all input compressed");
    assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
    out.truncate(out.len() - TAIL.len());
    out
}

/// Inflates one compressed message's payload (the tail put back); `None`
/// if it is not valid deflate data or inflates beyond `limit`.
fn inflate(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(limit.min(64 << 20) + 64);
    while (d.total_in() as usize) < input.len() {
        if out.len() > limit {
            return None;
        }
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let (in0, out0) = (d.total_in(), d.total_out());
        d.decompress_vec(
            &input[d.total_in() as usize..],
            &mut out,
            FlushDecompress::Sync,
        )
        .ok()?;
        if d.total_in() == in0 && d.total_out() == out0 && out.len() < out.capacity() {
            return None;
        }
    }
    Some(out)
}

/// A masked, FIN-set frame with first byte `first` around `payload`.
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = vec![first];
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= 0xffff {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// One message the client sends: its payload, and its frame as sent.
struct Message {
    payload: Vec<u8>,
    frame: Vec<u8>,
}

/// What a connection sends, in rotation.
struct Load {
    messages: Vec<Message>,
}

impl Load {
    /// Distinct `size`-byte payloads, enough to cover twice `window` bytes
    /// (at least two), framed compressed at `level` if `Some`.
    fn new(size: usize, window: usize, level: Option<u32>) -> Load {
        let n = (2 * window).div_ceil(size.max(1)).max(2);
        let messages = (0..n as u64)
            .map(|seed| {
                let payload = payload(size, seed);
                let frame = match level {
                    Some(level) => masked_frame(FIN_BINARY | RSV1, &compress(&payload, level)),
                    None => masked_frame(FIN_BINARY, &payload),
                };
                Message { payload, frame }
            })
            .collect();
        Load { messages }
    }

    /// Bytes on the wire per payload byte, over one rotation.
    fn wire_ratio(&self) -> f64 {
        let wire: usize = self.messages.iter().map(|m| m.frame.len()).sum();
        let payload: usize = self.messages.iter().map(|m| m.payload.len()).sum();
        wire as f64 / payload.max(1) as f64
    }
}

/// Whether the 101 `response` accepted permessage-deflate, and the answer.
fn deflate_answer(response: &[u8]) -> Option<String> {
    String::from_utf8_lossy(response)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_ascii_lowercase())
        })
        .filter(|v| v.starts_with("permessage-deflate"))
}

/// Opens a plain connection with `offer` (or none) and checks that the
/// server's answer matches: accepted with `client_no_context_takeover` and
/// no limit on the client's window, or not accepted when not offered.
async fn open(addr: SocketAddr, offer: bool) -> Result<TcpStream, Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let request = if offer { OFFER } else { NO_OFFER };
    let response = client::upgrade(&mut tcp, request).await?;
    match (offer, deflate_answer(&response)) {
        (true, None) => return Err("the server declined permessage-deflate".into()),
        (true, Some(answer)) if answer.contains("client_max_window_bits") => {
            return Err(format!("the server limited the client's window: {answer}").into())
        }
        (false, Some(answer)) => {
            return Err(format!("permessage-deflate answered, not offered: {answer}").into())
        }
        _ => {}
    }
    Ok(tcp)
}

/// Opens `n` connections, `parallel` handshakes at a time.
async fn open_many(
    addr: SocketAddr,
    offer: bool,
    n: usize,
    parallel: usize,
) -> Result<Vec<TcpStream>, Error> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = parallel.min(n - conns.len());
        let opened = futures::future::join_all((0..batch).map(|_| async {
            tokio::time::timeout(Duration::from_secs(10), open(addr, offer))
                .await
                .map_err(|_| Error::from("connect timed out"))?
        }))
        .await;
        for c in opened {
            conns.push(c?);
        }
    }
    Ok(conns)
}

/// The server's frames as they arrive, in a 64-byte aligned buffer (as in
/// the echo section's client); only headers are parsed.
struct Frames {
    raw: Vec<u8>,
    /// Offset of the aligned buffer in `raw`, and its length.
    base: usize,
    cap: usize,
    /// Unparsed bytes: `start..end` of the aligned buffer.
    start: usize,
    end: usize,
}

impl Frames {
    fn new(cap: usize) -> Frames {
        let raw = vec![0u8; cap + 64];
        let base = raw.as_ptr().align_offset(64);
        Frames {
            raw,
            base,
            cap,
            start: 0,
            end: 0,
        }
    }

    /// Reads until at least `need` unparsed bytes are buffered.
    async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R, need: usize) -> Result<(), Error> {
        if self.end - self.start >= need {
            return Ok(());
        }
        let b = self.base;
        self.raw.copy_within(b + self.start..b + self.end, b);
        self.end -= self.start;
        self.start = 0;
        while self.end < need {
            let n = rd.read(&mut self.raw[b + self.end..b + self.cap]).await?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.end += n;
        }
        Ok(())
    }

    /// Reads one whole message (its frames up to a data frame with FIN set;
    /// control frames between them are skipped). Appends its payload to
    /// `keep` if given. Returns the message's bytes on the wire, headers
    /// included, and whether it was compressed (RSV1 on its first frame).
    async fn message<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<(u64, bool), Error> {
        let b = self.base;
        let mut wire = 0u64;
        let mut compressed = None;
        loop {
            self.fill(rd, 2).await?;
            let (b0, b1) = (self.raw[b + self.start], self.raw[b + self.start + 1]);
            if b1 & 0x80 != 0 {
                return Err("a masked frame from the server".into());
            }
            let header = match b1 & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            self.fill(rd, header).await?;
            let h = &self.raw[b + self.start..b + self.start + header];
            let len = match header {
                4 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                10 => u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                _ => u64::from(b1 & 0x7f),
            };
            self.start += header;
            let opcode = b0 & 0x0f;
            if opcode == 0x8 {
                return Err("the server sent a Close".into());
            }
            let data = opcode < 0x8;
            if data {
                compressed.get_or_insert(b0 & RSV1 != 0);
            }
            let mut rest = usize::try_from(len).map_err(|_| "frame too long")?;
            while rest > 0 {
                if self.start == self.end {
                    let n = rd.read(&mut self.raw[b..b + self.cap]).await?;
                    if n == 0 {
                        return Err("the server closed the connection".into());
                    }
                    (self.start, self.end) = (0, n);
                }
                let n = rest.min(self.end - self.start);
                if let (true, Some(keep)) = (data, keep.as_deref_mut()) {
                    keep.extend_from_slice(&self.raw[b + self.start..b + self.start + n]);
                }
                self.start += n;
                rest -= n;
            }
            wire += header as u64 + len;
            if data && b0 & 0x80 != 0 {
                return Ok((wire, compressed.unwrap_or(false)));
            }
        }
    }
}

/// Checks that an echo's payload (inflated if `compressed`) is `sent`.
fn check_echo(echo: &[u8], compressed: bool, sent: &[u8]) -> Result<(), Error> {
    let same = if compressed {
        inflate(echo, sent.len()).is_some_and(|e| e == sent)
    } else {
        echo == sent
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "the echo of a {}-byte message differs from it ({} bytes{})",
            sent.len(),
            echo.len(),
            if compressed { ", compressed" } else { "" }
        )
        .into())
    }
}

/// One connection's echo loop until `stop`: one message in flight, the
/// load's messages in rotation; adds each echo to `count` and its bytes on
/// the wire to `wire`. The first echo is checked.
async fn echo_loop(
    conn: TcpStream,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    wire: Arc<AtomicU64>,
) -> Result<(), Error> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut frames = Frames::new(READ_BUF);
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        let message = &load.messages[next % load.messages.len()];
        let write = async {
            wr.write_all(&message.frame).await?;
            wr.flush().await?;
            Ok::<(), Error>(())
        };
        let mut first = (next == 0).then(Vec::new);
        let read = frames.message(&mut rd, first.as_mut());
        let ((), (bytes, compressed)) = tokio::try_join!(write, read)?;
        if let Some(echo) = first {
            check_echo(&echo, compressed, &message.payload)?;
        }
        count.fetch_add(1, Ordering::Relaxed);
        wire.fetch_add(bytes, Ordering::Relaxed);
        next += 1;
    }
    Ok(())
}

/// One echo run's figures.
struct Run {
    msgs_per_s: f64,
    /// Server → client bytes on the wire per payload byte.
    reply_wire: f64,
    allocs_per_msg: f64,
    server_cpu: f64,
    client_cpu: f64,
}

/// `conns` connections echo `load`'s messages of `size` bytes for `secs`
/// after a warm-up, as the echo section's runs do.
async fn echo_run(
    server: Running,
    offer: bool,
    load: &Arc<Load>,
    (conns, size): (usize, usize),
    secs: f64,
) -> Result<Run, Error> {
    let opened = open_many(server.addr, offer, conns, 50).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let wire = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for conn in opened {
        tasks.spawn(echo_loop(
            conn,
            load.clone(),
            stop.clone(),
            count.clone(),
            wire.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs_f64((secs / 4.0).max(0.1))).await;
    let me = servers::this_tid();
    let sample = || {
        (
            count.load(Ordering::Relaxed),
            wire.load(Ordering::Relaxed),
            alloc::allocs(server.slot),
            servers::cpu_ticks(server.tid),
            servers::cpu_ticks(me),
            Instant::now(),
        )
    };
    let (c0, w0, a0, cpu0, me0, t0) = sample();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (c1, w1, a1, cpu1, me1, t1) = sample();
    stop.store(true, Ordering::Relaxed);
    crate::join_load(&mut tasks).await?;
    if c1 == c0 {
        return Err("no echo in the measured window".into());
    }
    let elapsed = (t1 - t0).as_secs_f64();
    let msgs = (c1 - c0) as f64;
    Ok(Run {
        msgs_per_s: (c1 - c0) as f64 / elapsed,
        reply_wire: (w1 - w0) as f64 / (msgs * size as f64),
        allocs_per_msg: (a1 - a0) as f64 / msgs,
        server_cpu: (cpu1 - cpu0) as f64 / 100.0 / elapsed,
        client_cpu: (me1 - me0) as f64 / 100.0 / elapsed,
    })
}

/// One row's samples: rates, reply wire ratios, allocations per message,
/// server and client CPU use, first error.
#[derive(Default)]
struct Samples {
    rate: Vec<f64>,
    reply_wire: Vec<f64>,
    allocs: Vec<f64>,
    cpu: Vec<f64>,
    client_cpu: Vec<f64>,
    error: Option<String>,
}

/// The rows of both tables: per wharf server, compression on then off.
fn rows(fleet: &crate::Fleet, on: &Servers) -> Vec<(Kind, bool, Running)> {
    let mut rows = vec![];
    for (kind, server) in &on.on {
        rows.push((*kind, true, *server));
        if let Some((_, plain)) = fleet.plain.iter().find(|(k, _)| k == kind) {
            rows.push((*kind, false, *plain));
        }
    }
    rows
}

/// Echo throughput with compression on and off, then memory per connection.
pub(crate) async fn section(settings: &Settings, fleet: &crate::Fleet, on: &Servers) {
    let cfg = DeflateConfig::default();
    let window = 1usize << cfg.max_window_bits;
    println!("## permessage-deflate (RFC 7692): echo throughput, ws (plain), wharf's servers");
    println!(
        "   on: a server with DeflateConfig::default() (level {}, {}-bit window, context",
        cfg.level, cfg.max_window_bits
    );
    println!(
        "   takeover; messages under {} B go back uncompressed); off: the echo section's",
        cfg.min_message_size
    );
    println!("   server, compression off. The client offers `permessage-deflate;");
    println!("   client_no_context_takeover` (on) or nothing (off); its messages are compressed");
    println!("   before the run, each on its own, at the servers' level");
    println!("   payload: JSON records (same keys, pseudo-random numbers) as binary messages,");
    println!(
        "   distinct payloads in rotation covering {} (twice the window) before one repeats",
        fmt_size(2 * window)
    );
    println!("   ÷off: the median rate with compression ÷ that of the same server without it");
    println!("   wire c→s / s→c: bytes on the wire (frame headers included) per payload byte,");
    println!("   client → server (the pre-built frames) and server → client (the echoes counted)");
    println!("   allocs/msg, cpu: as in the echo section");
    let rows = rows(fleet, on);
    for &case in &settings.cases {
        let (conns, size) = CASES[case];
        let compressed = Arc::new(Load::new(size, window, Some(cfg.level)));
        let plain = Arc::new(Load::new(size, window, None));
        let mut samples: Vec<Samples> = rows.iter().map(|_| Samples::default()).collect();
        // Interleaved as in the echo section.
        for _ in 0..settings.runs {
            for (i, (_, offer, server)) in rows.iter().enumerate() {
                let load = if *offer { &compressed } else { &plain };
                match echo_run(*server, *offer, load, (conns, size), settings.secs).await {
                    Ok(run) => {
                        let s = &mut samples[i];
                        s.rate.push(run.msgs_per_s);
                        s.reply_wire.push(run.reply_wire);
                        s.allocs.push(run.allocs_per_msg);
                        s.cpu.push(run.server_cpu);
                        s.client_cpu.push(run.client_cpu);
                    }
                    Err(e) => {
                        samples[i].error.get_or_insert(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!();
        println!(
            "### {} × {} ws (plain), {} payloads in rotation",
            conns,
            fmt_size(size),
            compressed.messages.len()
        );
        println!(
            "  {:<13} {:<7} {:>10} {:>12} {:>6} {:>10} {:>8} {:>8} {:>11}  cpu",
            "server",
            "deflate",
            "msgs/s",
            "spread",
            "÷off",
            "MB/s",
            "wire c→s",
            "s→c",
            "allocs/msg"
        );
        for (i, (kind, offer, _)) in rows.iter().enumerate() {
            let s = &samples[i];
            let name = kind.name(false);
            let state = if *offer { "on" } else { "off" };
            let (Some(rate), Some(wire), Some(allocs), Some(cpu), Some(client_cpu)) = (
                Stat::of(&s.rate),
                Stat::of(&s.reply_wire),
                Stat::of(&s.allocs),
                Stat::of(&s.cpu),
                Stat::of(&s.client_cpu),
            ) else {
                println!(
                    "  {name:<13} {state:<7} {:>10}  ({})",
                    "error",
                    s.error.as_deref().unwrap_or("")
                );
                continue;
            };
            // The row after an "on" row is its server's "off" row.
            let vs_off = if *offer {
                rows.get(i + 1)
                    .filter(|(k, o, _)| k == kind && !o)
                    .and_then(|_| Stat::of(&samples[i + 1].rate))
                    .filter(|off| off.median > 0.0)
                    .map_or("-".to_owned(), |off| {
                        format!("{:.2}", rate.median / off.median)
                    })
            } else {
                String::new()
            };
            let load = if *offer { &compressed } else { &plain };
            let notes = s
                .error
                .as_ref()
                .map_or(String::new(), |e| format!("  ({e})"));
            println!(
                "  {name:<13} {state:<7} {:>10} {:>12} {vs_off:>6} {:>10.1} {:>8.3} {:>8.3} {:>11.2}  {:>3.0}% (client {:>3.0}%){notes}",
                fmt_rate(rate.median),
                rate.spread(),
                rate.median * size as f64 / 1e6,
                load.wire_ratio(),
                wire.median,
                allocs.median,
                cpu.median * 100.0,
                client_cpu.median * 100.0,
            );
        }
    }
    println!();
    memory(settings, &rows, cfg.level).await;
}

/// Server-thread heap per connection, with compression on and off: once the
/// connections are open, once each has echoed one message, once all closed.
async fn memory(settings: &Settings, rows: &[(Kind, bool, Running)], level: u32) {
    // Two descriptors per connection (client and server in this process),
    // and some to spare.
    let limit = open_files_limit();
    let n = settings
        .deflate_idle
        .min(limit.saturating_sub(512) / 2)
        .max(1);
    println!(
        "## permessage-deflate: memory per ws (plain) connection, {n} connections (WHARF_BENCH_DEFLATE_IDLE{})",
        if n < settings.deflate_idle {
            format!(
                ", {} asked: the open files limit is {limit}",
                settings.deflate_idle
            )
        } else {
            String::new()
        }
    );
    println!("   server-thread heap bytes (counting allocator) ÷ connections, each against the");
    println!("   count before the connections opened; one run. open: after the handshake (on:");
    println!("   deflate negotiated, no zlib state yet); 1 msg: after every connection had one");
    println!(
        "   {} message echoed (on: compressed both ways, so the server holds its",
        fmt_size(MEMORY_MESSAGE)
    );
    println!("   decompressor and compressor); closed: after every connection closed");
    println!(
        "  {:<13} {:<7} {:>10} {:>6} {:>10} {:>6} {:>10}",
        "server", "deflate", "open", "÷off", "1 msg", "÷off", "closed"
    );
    let payload = payload(MEMORY_MESSAGE, 0);
    let mut results: Vec<Result<(f64, f64, f64), String>> = vec![];
    for (_, offer, server) in rows {
        let frame = if *offer {
            masked_frame(FIN_BINARY | RSV1, &compress(&payload, level))
        } else {
            masked_frame(FIN_BINARY, &payload)
        };
        results.push(
            memory_run(*server, *offer, n, &payload, &frame)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    for (i, ((kind, offer, _), result)) in rows.iter().zip(&results).enumerate() {
        let name = kind.name(false);
        let state = if *offer { "on" } else { "off" };
        let (open, one, closed) = match result {
            Ok(r) => *r,
            Err(e) => {
                println!("  {name:<13} {state:<7} {:>10}  ({e})", "error");
                continue;
            }
        };
        let off = results
            .get(i + 1)
            .filter(|_| *offer && rows.get(i + 1).is_some_and(|r| r.0 == *kind && !r.1))
            .and_then(|r| r.as_ref().ok());
        let ratio = |value: f64, base: Option<f64>| {
            base.filter(|b| *b > 0.0)
                .map_or(String::new(), |b| format!("{:.2}", value / b))
        };
        println!(
            "  {name:<13} {state:<7} {open:>10.0} {:>6} {one:>10.0} {:>6} {closed:>10.0}",
            ratio(open, off.map(|r| r.0)),
            ratio(one, off.map(|r| r.1)),
        );
    }
    println!();
}

/// Opens `n` connections to `server`, has each echo `frame` once, closes
/// them; returns the server thread's heap bytes per connection (against
/// the count before) when open, after the echo and after the close.
async fn memory_run(
    server: Running,
    offer: bool,
    n: usize,
    payload: &[u8],
    frame: &[u8],
) -> Result<(f64, f64, f64), Error> {
    let per = |bytes: isize| bytes as f64 / n as f64;
    let before = alloc::live(server.slot);
    let conns = open_many(server.addr, offer, n, 64).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = alloc::live(server.slot);
    let (conns, echoed) = match conns {
        Ok(mut conns) => {
            let echoed = echo_once(&mut conns, offer, payload, frame).await;
            (conns, echoed)
        }
        Err(e) => (vec![], Err(e)),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let one = alloc::live(server.slot);
    drop(conns);
    // Let the server notice every close.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let closed = alloc::live(server.slot);
    echoed?;
    Ok((per(open - before), per(one - before), per(closed - before)))
}

/// Every connection echoes `frame` once (64 at a time); each echo is
/// checked, and must come back compressed if `compressed`.
async fn echo_once(
    conns: &mut [TcpStream],
    compressed: bool,
    payload: &[u8],
    frame: &[u8],
) -> Result<(), Error> {
    for batch in conns.chunks_mut(64) {
        let done = futures::future::join_all(batch.iter_mut().map(|conn| async move {
            conn.write_all(frame).await?;
            conn.flush().await?;
            let mut frames = Frames::new(16 * 1024);
            let mut echo = Vec::new();
            let read = frames.message(conn, Some(&mut echo));
            let (_, was) = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .map_err(|_| Error::from("the echo timed out"))??;
            if was != compressed {
                return Err(Error::from(format!(
                    "the echo came back {}compressed",
                    if was { "" } else { "un" }
                )));
            }
            check_echo(&echo, was, payload)
        }))
        .await;
        for d in done {
            d?;
        }
    }
    Ok(())
}

//! The load client, the same for every server: it runs on the main thread
//! (pinned to core 1). Connections are opened (TCP, TLS, upgrade) in a
//! tokio `current_thread` runtime, then driven by a plain mio loop on the
//! same thread (`run_load`): the frame is built and masked once; each
//! connection keeps one message in flight, writing the frame and reading
//! the echo as the socket allows into a 64-byte aligned buffer; the echo
//! is not parsed, only its length (known in advance) is awaited.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::Tls;

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client stream, plain or TLS.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A masked binary frame of `len` bytes, and the length of its unmasked echo.
pub(crate) fn masked_frame(len: usize) -> (Vec<u8>, usize) {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82];
    let header = if len < 126 {
        frame.push(0x80 | len as u8);
        2
    } else if len <= 0xffff {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        10
    };
    frame.extend_from_slice(&mask);
    frame.extend((0..len).map(|i| (i as u8 ^ 0x5a) ^ mask[i % 4]));
    (frame, header + len)
}

/// Opens a connection: TCP, then TLS if `tls`, then the WebSocket upgrade
/// if `ws` (a fixed request; the response is read up to its blank line).
pub(crate) async fn open(addr: SocketAddr, tls: Option<&Tls>, ws: bool) -> Result<Conn, Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut conn = match tls {
        None => Conn::Plain(tcp),
        Some(tls) => Conn::Tls(Box::new(tls.client.connect(tls.name.clone(), tcp).await?)),
    };
    if ws {
        match &mut conn {
            Conn::Plain(s) => upgrade(s, REQUEST).await?,
            Conn::Tls(s) => upgrade(s.as_mut(), REQUEST).await?,
        };
    }
    Ok(conn)
}

const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Sends the upgrade `request` and reads the response up to its blank
/// line; returns the response head once it is a 101.
pub(crate) async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> Result<Vec<u8>, Error> {
    s.write_all(request).await?;
    s.flush().await?;
    let mut response = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !response.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err("the server closed during the upgrade".into());
        }
        response.extend_from_slice(&buf[..n]);
        if response.len() > 4096 {
            return Err("upgrade response too long".into());
        }
    }
    if !response.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        )
        .into());
    }
    Ok(response)
}

/// What the load loop counted: echoes in all, in the measured window, and
/// the window's length.
pub(crate) struct Load {
    pub(crate) total: u64,
    pub(crate) in_window: u64,
    pub(crate) window: Duration,
}

/// One connection of the load loop: the socket, the TLS session if any,
/// how much of the frame is written and how much of the echo is read.
struct Slot {
    tcp: mio::net::TcpStream,
    tls: Option<rustls::ClientConnection>,
    written: usize,
    read: usize,
}

/// Runs the echo load on this thread until `warmup + window` has passed:
/// every connection writes the frame, reads `expect` bytes back, and starts
/// again. `mark` runs at the start and at the end of the measured window
/// (the caller samples the server's counters there). The loop is mio on
/// the calling thread, with no task, lock or buffer per message, so that
/// the client costs as little as it can and the servers' differences show.
pub(crate) fn run_load(
    conns: Vec<Conn>,
    frame: &[u8],
    expect: usize,
    warmup: Duration,
    window: Duration,
    mut mark: impl FnMut(),
) -> Result<Load, Error> {
    let mut poll = mio::Poll::new()?;
    let mut slots = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let (tcp, tls) = match conn {
            Conn::Plain(s) => (s.into_std()?, None),
            Conn::Tls(s) => {
                let (tcp, session) = s.into_inner();
                (tcp.into_std()?, Some(session))
            }
        };
        let mut tcp = mio::net::TcpStream::from_std(tcp);
        poll.registry().register(
            &mut tcp,
            mio::Token(i),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        )?;
        slots.push(Slot {
            tcp,
            tls,
            written: 0,
            read: 0,
        });
    }
    // One receive buffer for all connections (the echo is counted, not
    // kept), 64-byte aligned: on some processors the kernel copies a 1 MiB
    // echo into an unaligned buffer at about half speed, a cost of the
    // load client that would show in every server's figures.
    let mut raw = vec![0u8; expect.min(1 << 20) + 64];
    let off = raw.as_ptr().align_offset(64);
    let buf = &mut raw[off..];
    let mut count = 0u64;
    for slot in &mut slots {
        count += drive(slot, frame, expect, buf)?;
    }
    let mut events = mio::Events::with_capacity(1024);
    let start = Instant::now();
    let (open_at, close_at) = (start + warmup, start + warmup + window);
    let mut window_start: Option<(Instant, u64)> = None;
    loop {
        let now = Instant::now();
        if window_start.is_none() && now >= open_at {
            mark();
            window_start = Some((Instant::now(), count));
        }
        if now >= close_at {
            mark();
            let (t0, c0) = window_start.expect("the window opened before it closed");
            if count == c0 {
                return Err("the echo stalled: nothing echoed in the measured window".into());
            }
            return Ok(Load {
                total: count,
                in_window: count - c0,
                window: t0.elapsed(),
            });
        }
        let next = if window_start.is_none() {
            open_at
        } else {
            close_at
        };
        poll.poll(&mut events, Some(next - now))?;
        for event in &events {
            count += drive(&mut slots[event.token().0], frame, expect, buf)?;
        }
    }
}

/// Moves one connection as far as its socket allows: writes the rest of
/// the frame, reads the echo, and starts the next message once the whole
/// echo is in. Returns the echoes completed.
fn drive(slot: &mut Slot, frame: &[u8], expect: usize, buf: &mut [u8]) -> Result<u64, Error> {
    let mut done = 0;
    loop {
        let wrote = write_some(slot, frame)?;
        let read = read_some(slot, expect, buf)?;
        if slot.written == frame.len() && slot.read == expect {
            (slot.written, slot.read) = (0, 0);
            done += 1;
        } else if !wrote && !read {
            return Ok(done);
        }
    }
}

/// Writes what the socket takes of the frame's rest; true on progress.
fn write_some(slot: &mut Slot, frame: &[u8]) -> Result<bool, Error> {
    let mut progress = false;
    match &mut slot.tls {
        None => {
            while slot.written < frame.len() {
                match slot.tcp.write(&frame[slot.written..]) {
                    Ok(n) => {
                        slot.written += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Some(tls) => loop {
            // rustls takes as much plaintext as its send buffer allows
            // (64 KiB by default) and encrypts it at once.
            if slot.written < frame.len() {
                let n = tls.writer().write(&frame[slot.written..])?;
                slot.written += n;
                progress |= n > 0;
            }
            if !tls.wants_write() {
                break;
            }
            match tls.write_tls(&mut slot.tcp) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        },
    }
    Ok(progress)
}

/// Reads what the socket has of the echo; true on progress. Stops at the
/// echo's end (one message in flight: nothing follows it).
fn read_some(slot: &mut Slot, expect: usize, buf: &mut [u8]) -> Result<bool, Error> {
    let mut progress = false;
    while slot.read < expect {
        let room = (expect - slot.read).min(buf.len());
        let n = match &mut slot.tls {
            None => match slot.tcp.read(&mut buf[..room]) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            },
            Some(tls) => match tls.reader().read(&mut buf[..room]) {
                Ok(0) => return Err("the server closed the TLS session".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // No plaintext left: read records from the socket.
                    match tls.read_tls(&mut slot.tcp) {
                        Ok(0) => return Err("the server closed the connection".into()),
                        Ok(_) => {
                            tls.process_new_packets()?;
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            },
        };
        slot.read += n;
        progress = true;
    }
    Ok(progress)
}

/// Opens `n` connections, `parallel` handshakes at a time.
pub(crate) async fn open_many(
    addr: SocketAddr,
    tls: Option<&Tls>,
    ws: bool,
    n: usize,
    parallel: usize,
) -> Result<Vec<Conn>, Error> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = parallel.min(n - conns.len());
        let opened = futures::future::join_all((0..batch).map(|_| async {
            tokio::time::timeout(Duration::from_secs(10), open(addr, tls, ws))
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

/// One handshake, then a proof that the server finished it: the 101 for a
/// WebSocket server, one echoed byte for the floor.
pub(crate) async fn handshake_once(addr: SocketAddr, tls: &Tls, ws: bool) -> Result<(), Error> {
    let conn = open(addr, Some(tls), ws).await?;
    if !ws {
        let Conn::Tls(mut s) = conn else {
            unreachable!("opened with TLS")
        };
        s.write_all(b"x").await?;
        s.flush().await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
    }
    Ok(())
}

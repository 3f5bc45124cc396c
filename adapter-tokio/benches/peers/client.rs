//! The load client, the same for every server: it runs on the main thread
//! (pinned to core 1) in a tokio `current_thread` runtime. Frames are built
//! and masked once; each connection keeps one message in flight, writing
//! the frame and reading the echo concurrently into a 64-byte aligned
//! buffer; the echo is not parsed, only its length (known in advance) is
//! awaited.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// One connection's echo loop until `stop`; adds each echo to `count`.
pub(crate) async fn echo_loop(
    conn: Conn,
    frame: Arc<Vec<u8>>,
    expect: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Result<(), Error> {
    match conn {
        Conn::Plain(s) => echo_on(s, &frame, expect, &stop, &count).await,
        Conn::Tls(s) => echo_on(*s, &frame, expect, &stop, &count).await,
    }
}

async fn echo_on<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    frame: &[u8],
    expect: usize,
    stop: &AtomicBool,
    count: &AtomicU64,
) -> Result<(), Error> {
    let (mut rd, mut wr) = tokio::io::split(s);
    // 64-byte aligned: the kernel's copy into an unaligned buffer ran at
    // about half speed for 1 MiB messages on this kind of machine.
    let mut raw = vec![0u8; expect + 64];
    let off = raw.as_ptr().align_offset(64);
    let buf = &mut raw[off..off + expect];
    while !stop.load(Ordering::Relaxed) {
        let write = async {
            wr.write_all(frame).await?;
            wr.flush().await
        };
        let read = rd.read_exact(buf);
        tokio::try_join!(write, read)?;
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
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

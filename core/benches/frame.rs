//! Throughput of the framing hot paths: masking (RFC 6455 §5.3), header
//! codec (§5.2), incremental UTF-8 validation (§8.1), and appending a
//! payload to a buffer at every offset from its source modulo 64.
//!
//! Run with `cargo bench -p wharf-core --bench frame`.

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use wharf_core::bench_api::{self, Utf8Check, HEADER_BUF_LEN};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_mask");
    for (name, len) in [
        ("16B", 16usize),
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let mut buf = payload(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| bench_api::apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)));
        });
    }
    g.finish();

    let mut g = c.benchmark_group("extend_masked");
    let src = payload(64 << 10);
    let mut dst = Vec::with_capacity(src.len());
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function("64KiB", |b| {
        b.iter(|| {
            dst.clear();
            bench_api::extend_masked(&mut dst, black_box(&src), black_box(KEY), black_box(3));
            black_box(&dst);
        });
    });
    g.finish();
}

/// 16 KiB appended to a buffer whose end sits `rel` bytes past the source
/// modulo 4 KiB: a plain `extend_from_slice` (one `memcpy`) against the
/// connection's `append`. Offsets 1-31 are where glibc's `rep movsb` is slow
/// on some AMD processors (see `core/src/copy.rs`); `every` steps through
/// all 4,096 offsets, one per copy, which is what a connection whose
/// buffers sit wherever the allocator put them can expect.
fn append(c: &mut Criterion) {
    const LEN: usize = 16 << 10;
    let src_raw = payload(LEN + 4096);
    let base = src_raw.as_ptr().align_offset(4096);
    let src = &src_raw[base..base + LEN];
    let mut dst: Vec<u8> = Vec::with_capacity(LEN + 8192);
    let dst_base = dst.as_ptr().align_offset(4096);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(LEN as u64));
    for rel in [Some(0usize), Some(8), Some(40), Some(1000), None] {
        for (name, f) in [
            (
                "extend_from_slice",
                (|d: &mut Vec<u8>, s: &[u8]| d.extend_from_slice(s)) as fn(&mut Vec<u8>, &[u8]),
            ),
            ("wharf", bench_api::append),
        ] {
            let case = rel.map_or("16KiB+every".to_string(), |rel| format!("16KiB+{rel}"));
            let mut next = 0;
            g.bench_function(BenchmarkId::new(name, case), |b| {
                b.iter(|| {
                    // The destination's end: `rel` past the source, mod 4 KiB.
                    let rel = rel.unwrap_or_else(|| {
                        next = (next + 1) % 4096;
                        next
                    });
                    dst.clear();
                    dst.resize(dst_base + rel, 0);
                    f(&mut dst, black_box(src));
                    black_box(&dst);
                });
            });
        }
    }
    g.finish();
}

fn header(c: &mut Criterion) {
    // A stream of small masked client frames (as a server sees them), with
    // the three length encodings mixed: mostly short, some 16-bit, a few 64-bit.
    let mut stream = Vec::new();
    let mut frames = 0u64;
    for i in 0..1000usize {
        let len = match i % 20 {
            0 => 70_000,
            1..=4 => 300,
            _ => i % 126,
        } as u64;
        let mut out = [0u8; HEADER_BUF_LEN];
        let n = bench_api::encode_header(true, 0x2, Some(KEY), len, &mut out)
            .expect("0x2 is the binary opcode");
        // Headers only, back to back: the bench measures the header codec,
        // not payload copying.
        stream.extend_from_slice(&out[..n]);
        frames += 1;
    }
    let mut g = c.benchmark_group("decode_header");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function(BenchmarkId::new("small_frames", frames), |b| {
        b.iter(|| {
            let mut at = 0;
            let mut total = 0u64;
            while let Ok(Some((len, n))) =
                bench_api::decode_header(black_box(&stream[at..]), true, 0)
            {
                total = total.wrapping_add(len);
                at += n;
            }
            black_box(total)
        });
    });
    g.finish();

    let mut g = c.benchmark_group("encode_header");
    let lens = [5u64, 125, 300, 65_535, 70_000, 1 << 40];
    let mut out = [0u8; HEADER_BUF_LEN];
    let bytes: usize = lens
        .iter()
        .map(|&l| bench_api::encode_header(true, 0x1, Some(KEY), l, &mut out).unwrap_or(0))
        .sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(BenchmarkId::new("mixed_lengths", lens.len()), |b| {
        b.iter(|| {
            let mut n = 0;
            for &l in &lens {
                n += bench_api::encode_header(
                    black_box(true),
                    black_box(0x1),
                    black_box(Some(KEY)),
                    black_box(l),
                    &mut out,
                )
                .unwrap_or(0);
            }
            black_box(&out);
            n
        });
    });
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let len = 64 << 10;
    let ascii: Vec<u8> = "The quick brown fox jumps over the lazy dog. "
        .bytes()
        .cycle()
        .take(len)
        .collect();
    let multi = {
        let unit = "κόσμε 日本語テキスト 𝄞 ünïcödé — ";
        let mut s = String::with_capacity(len + unit.len());
        while s.len() < len {
            s.push_str(unit);
        }
        s.into_bytes()
    };
    let mut g = c.benchmark_group("utf8_feed");
    for (name, data) in [("ascii_64KiB", &ascii), ("multibyte_64KiB", &multi)] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut v = Utf8Check::new();
                let ok = v.feed(black_box(data)) && v.finish();
                black_box(ok)
            });
        });
    }
    // The same multibyte text in 4 KiB fragments: sequences split across feeds.
    g.throughput(Throughput::Bytes(multi.len() as u64));
    g.bench_function("multibyte_64KiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            let mut v = Utf8Check::new();
            let mut ok = true;
            for chunk in black_box(&multi).chunks(4096) {
                ok &= v.feed(chunk);
            }
            black_box(ok && v.finish())
        });
    });
    g.finish();
}

/// Private, so the undocumented `pub fn` that `criterion_group!` generates
/// stays out of the `missing_docs` lint's reach.
mod groups {
    use super::{append, header, mask, utf8};
    criterion::criterion_group!(benches, mask, header, utf8, append);
}

criterion_main!(groups::benches);

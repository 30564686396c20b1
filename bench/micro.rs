//! Hot-path microbenchmarks (criterion): request parsing, slot hashing, and the split and merge of
//! a 100-key MGET. `cargo bench --bench micro`; results and their reading in bench/RESULTS.md.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use clusterless::hot::{merge_fan_out, split, Class};
use clusterless::resp::{self, reply, Limits, Parsed, RequestParser};
use clusterless::slot;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let one = resp::encode_command(&[b"GET".as_ref(), b"key:000000012345"]);
    g.throughput(Throughput::Elements(1));
    g.bench_function("GET", |b| {
        b.iter_batched(
            || BytesMut::from(&one[..]),
            |mut buf| {
                let mut p = RequestParser::new(Limits::default(), true);
                black_box(p.next(&mut buf).ok())
            },
            BatchSize::SmallInput,
        )
    });
    let mut pipeline = BytesMut::new();
    for i in 0..100 {
        let k = format!("key:{i:012}");
        pipeline.extend_from_slice(&resp::encode_command(&[b"SET".as_ref(), k.as_bytes(), &[b'x'; 32]]));
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("100 pipelined SET 32B", |b| {
        b.iter_batched(
            || pipeline.clone(),
            |mut buf| {
                let mut p = RequestParser::new(Limits::default(), true);
                let mut n = 0;
                while let Ok(Parsed::Request(r)) = p.next(&mut buf) {
                    n += r.args.len();
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn hash(c: &mut Criterion) {
    let mut g = c.benchmark_group("slot");
    g.throughput(Throughput::Elements(1));
    g.bench_function("16-byte key", |b| b.iter(|| slot::slot(black_box(b"key:000000012345"))));
    g.bench_function("hash-tagged key", |b| b.iter(|| slot::slot(black_box(b"user:{1234}:profile:settings"))));
    g.finish();
}

fn mget(c: &mut Criterion) {
    let mut args = vec![Bytes::from_static(b"MGET")];
    args.extend((0..100).map(|i| Bytes::from(format!("key:{i:012}"))));
    let parts = split(Class::MGet, &args).expect("100 keys span several slots");
    // What the nodes answer: each part's values, 32 bytes each.
    let replies: Vec<Bytes> =
        parts.iter().map(|p| reply::array(&vec![reply::bulk(&[b'v'; 32]); parts.keys(p).len()])).collect();
    let mut g = c.benchmark_group("mget100");
    g.throughput(Throughput::Elements(1));
    g.bench_function("split", |b| b.iter(|| black_box(split(Class::MGet, black_box(&args)))));
    g.bench_function("merge", |b| {
        b.iter_batched(
            || replies.clone(),
            |r| black_box(merge_fan_out(Class::MGet, args.len(), &parts, r, 2)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, parse, hash, mget);
criterion_main!(benches);

//! Criterion benches of the CPU matmul kernels, per weight format and activation rows
//! (1 = batch-1 decode, 4/32 = batched decode, 256 = prefill). Device: cpu.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use maspo::engine::cpu::{Acts, Pool, QMatrix};

fn matmul(c: &mut Criterion) {
    let pool = Pool::new(
        std::env::var("MASPO_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    let (n, k) = (1536, 576);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut group = c.benchmark_group("cpu/matmul_1536x576");
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let mat = QMatrix::from_qtensor(&QTensor::quantize(&t, dtype).unwrap()).unwrap();
        for m in [1usize, 4, 32, 256] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 31) % 97) as f32 / 50.0 - 1.0)
                .collect();
            let mut out = vec![0f32; m * n];
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_with_input(BenchmarkId::new(format!("{dtype:?}"), m), &m, |b, &m| {
                b.iter(|| {
                    let a = Acts::new(&pool, &x, m, k);
                    mat.matmul(&pool, &a, &mut out);
                })
            });
        }
    }
    group.finish();
    // Weights far larger than the caches, streamed from memory as in real decode.
    let (n, k) = (65536, 896);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut group = c.benchmark_group("cpu/matmul_65536x896");
    for dtype in [GgmlDType::Q5_0, GgmlDType::Q8_0] {
        let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let mat = QMatrix::from_qtensor(&QTensor::quantize(&t, dtype).unwrap()).unwrap();
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 31) % 97) as f32 / 50.0 - 1.0)
            .collect();
        let mut out = vec![0f32; n];
        group.throughput(Throughput::Elements((n * k) as u64));
        group.bench_function(format!("{dtype:?}/1"), |b| {
            b.iter(|| {
                let a = Acts::new(&pool, &x, 1, k);
                mat.matmul(&pool, &a, &mut out);
            })
        });
    }
    group.finish();
}

/// One Qwen2.5-0.5B layer's matmuls at batch 1, 24 distinct copies cycled so the weights come
/// from memory as in real decode.
fn qwen_layer(c: &mut Criterion) {
    let pool = Pool::new(
        std::env::var("MASPO_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    let shapes = [
        (896, 896, GgmlDType::Q5_0),
        (128, 896, GgmlDType::Q5_0),
        (4864, 896, GgmlDType::Q5_0),
        (896, 4864, GgmlDType::Q8_0),
    ];
    let mut group = c.benchmark_group("cpu/qwen_layer_b1");
    for (n, k, dtype) in shapes {
        let mats: Vec<QMatrix> = (0..24)
            .map(|s| {
                let w: Vec<f32> = (0..n * k)
                    .map(|i| (((i + s) * 7919) % 1000) as f32 / 500.0 - 1.0)
                    .collect();
                let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
                QMatrix::from_qtensor(&QTensor::quantize(&t, dtype).unwrap()).unwrap()
            })
            .collect();
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 31) % 97) as f32 / 50.0 - 1.0)
            .collect();
        let mut out = vec![0f32; n];
        let mut i = 0;
        group.throughput(Throughput::Elements((n * k) as u64));
        group.bench_function(format!("{n}x{k}/{dtype:?}"), |b| {
            b.iter(|| {
                i = (i + 1) % mats.len();
                let a = Acts::new(&pool, &x, 1, k);
                mats[i].matmul(&pool, &a, &mut out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = matmul, qwen_layer
}
criterion_main!(benches);

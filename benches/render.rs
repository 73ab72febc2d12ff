//! Renderer throughput on short English sentences, like the reference timing (NOTES.md in
//! ../shared/anchors/render: the first 2000 EWT dev sentences, ~9,700 sentences/s on one core).
//!
//! `cargo bench --bench render` reports sentences/s ("elem/s" of the `sentences` group) and
//! patches/s (text + EOS patches, the `patches` group), on one thread and with rayon, and
//! sentences/s of every rendering strategy on one thread (the `strategies` group; the
//! original bigrams renderer: 1,039 sentences/s, ../shared/anchors/render/bigrams/NOTES.md).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pixel_render::{Input, RenderConfig, Renderer, RenderingStrategy};

/// The `# text = ` lines of the EWT dev set when the shared data is present, else a fixed
/// mix of sentences of about the same length (mean ~60 characters).
fn sentences() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/ud/UD_English-EWT/en_ewt-ud-dev.conllu"
    );
    if let Ok(text) = std::fs::read_to_string(path) {
        let found: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# text = "))
            .take(2000)
            .map(str::to_string)
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    let base = [
        "From the AP comes this story :",
        "President Bush on Tuesday nominated two individuals to replace retiring jurists.",
        "The sheikh in wheel-chair has been attacked with a F-16-launched bomb.",
        "He could be killed years ago and the israelians have all the reasons.",
        "Does anyone know whether the store on Main Street opens on Sundays?",
        "Thanks again for your help, I will call you tomorrow morning.",
    ];
    (0..2000)
        .map(|i| base[i % base.len()].to_string())
        .collect()
}

fn bench_render(c: &mut Criterion) {
    let texts = sentences();
    let mut renderer = Renderer::new(RenderConfig::default()).expect("embedded fonts load");
    let patches: usize = texts
        .iter()
        .map(|t| renderer.render_text(t).attention_len())
        .sum();
    let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t.clone())).collect();
    eprintln!(
        "{} sentences, mean {:.1} chars, {} text+EOS patches",
        texts.len(),
        texts.iter().map(|t| t.chars().count()).sum::<usize>() as f64 / texts.len() as f64,
        patches
    );

    let mut group = c.benchmark_group("sentences");
    group.sample_size(10);
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("one_core", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(renderer.render_text(t).num_text_patches);
            }
        })
    });
    // Fresh renderer per pass: glyph bitmaps, shape plans and shaped words all start empty.
    group.bench_function("one_core_cold_cache", |b| {
        b.iter(|| {
            let mut cold = renderer.fork();
            for t in &texts {
                black_box(cold.render_text(t).num_text_patches);
            }
        })
    });
    group.bench_function("rayon", |b| {
        b.iter(|| black_box(renderer.render_batch(&inputs).len()))
    });
    group.finish();

    let mut group = c.benchmark_group("patches");
    group.sample_size(10);
    group.throughput(Throughput::Elements(patches as u64));
    group.bench_function("one_core", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(renderer.render_text(t).num_text_patches);
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("strategies");
    group.sample_size(10);
    group.throughput(Throughput::Elements(texts.len() as u64));
    for rendering in RenderingStrategy::ALL {
        let mut r = Renderer::new(RenderConfig {
            rendering,
            ..RenderConfig::default()
        })
        .expect("embedded fonts load");
        group.bench_function(rendering.name(), |b| {
            b.iter(|| {
                for t in &texts {
                    black_box(r.render_text(t).num_text_patches);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);

"""Sentences per second: pixel.Renderer.render_batch against `pixel render --batch`.

    python scripts/bench_python_render.py ../shared/data/ud/UD_English-EWT/en_ewt-ud-dev.conllu \
        --pixel target/release/pixel [--sentences 2000] [--repeats 5]

Both render the same sentences (the first N `# text = ` lines of a CoNLL-U file) on all
cores with the default renderer (Pango layout, L = 529). The CLI's time is the whole process
(start-up, reading the file, writing one JSON line per sentence to /dev/null); the Python
time is the render_batch call, then the call plus reading every `pixel_values` array.
Runs are interleaved; prints the median over the repeats.
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pixel


def sentences(conllu: Path, n: int):
    out = []
    with open(conllu, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# text = "):
                out.append(line[len("# text = ") :].rstrip("\n"))
                if len(out) == n:
                    break
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("conllu", type=Path)
    parser.add_argument("--pixel", type=Path, required=True, help="the pixel CLI binary")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="call pixel.keep_freed_memory() first (as the CLI does)")
    args = parser.parse_args()
    if args.keep_freed_memory:
        pixel.keep_freed_memory()

    texts = sentences(args.conllu, args.sentences)
    n = len(texts)
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "sentences.txt"
        batch.write_text("\n".join(texts) + "\n", encoding="utf-8")

        def cli():
            subprocess.run([str(args.pixel), "render", "--batch", str(batch)],
                           check=True, stdout=subprocess.DEVNULL)

        renderer = pixel.Renderer()
        runs = {
            "pixel render --batch (whole process)": cli,
            "Renderer.render_batch": lambda: renderer.render_batch(texts),
            "render_batch + every pixel_values": lambda: [
                e.pixel_values for e in renderer.render_batch(texts)
            ],
        }
        # Interleaved, so that both see the same machine load; the first round warms up.
        times = {name: [] for name in runs}
        for round in range(args.repeats + 1):
            for name, fn in runs.items():
                t = timed(fn)
                if round:
                    times[name].append(t)
    print(f"{n} sentences, median of {args.repeats} interleaved rounds")
    for name, ts in times.items():
        print(f"{name:38s} {n / statistics.median(ts):9,.0f} sentences/s")


if __name__ == "__main__":
    main()

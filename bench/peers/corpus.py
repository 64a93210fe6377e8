#!/usr/bin/env python3
"""The benchmarks' word-count corpus: English-like text whose word frequencies follow
Zipf's law (rank r has weight 1/r) over a 60,000-word random vocabulary, in sentences of
twelve words, split into equal files. Deterministic: the same arguments give the same bytes.

usage: corpus.py OUTDIR TOTAL_MIB FILES [SEED]      (seed 7 by default)
"""
import os
import random
import sys

VOCABULARY = 60_000
WORDS_PER_LINE = 12
BATCH = 4096


def vocabulary(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(VOCABULARY)}
    words = sorted(words)
    rng.shuffle(words)
    return words


def write_file(path, size, rng, words, weights):
    written = 0
    with open(path, "w") as out:
        while written < size:
            batch = rng.choices(words, weights, k=BATCH)
            lines = []
            for start in range(0, BATCH, WORDS_PER_LINE):
                line = batch[start:start + WORDS_PER_LINE]
                line[0] = line[0].capitalize()
                lines.append(" ".join(line) + ".")
            text = "\n".join(lines) + "\n"
            out.write(text)
            written += len(text)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    outdir, total_mib, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) == 5 else 7)
    words = vocabulary(rng)
    weights = [1.0 / rank for rank in range(1, len(words) + 1)]
    os.makedirs(outdir, exist_ok=True)
    for i in range(files):
        write_file(os.path.join(outdir, f"part-{i:05d}.txt"), total_mib * 1024 * 1024 // files, rng, words, weights)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Word count with dask.bag on a distributed LocalCluster of WORKERS single-threaded worker
processes: the peer of `lab-mapreduce run --job wordcount`. Words are maximal runs of ASCII
letters, lowercased. Writes `word count` lines to OUTDIR/part-0; prints start-up (cluster)
and work seconds apart.

usage: wordcount_dask.py INDIR OUTDIR [WORKERS]
"""
import os
import re
import sys
import time
from collections import Counter

import dask.bag as db
from distributed import Client, LocalCluster

WORD = re.compile(r"[a-z]+")


def count(lines):
    counts = Counter()
    for line in lines:
        counts.update(WORD.findall(line.lower()))
    return [counts]


def merge(parts):
    total = Counter()
    for part in parts:
        total.update(part)
    return total


def main():
    indir, outdir = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    started = time.time()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster):
            ready = time.time()
            lines = db.read_text(os.path.join(indir, "*.txt"), blocksize="32MiB")
            total = lines.map_partitions(count).reduction(merge, merge).compute()
            os.makedirs(outdir, exist_ok=True)
            with open(os.path.join(outdir, "part-0"), "w") as out:
                out.writelines(f"{word} {n}\n" for word, n in sorted(total.items()))
            done = time.time()
    print(f"startup_seconds={ready - started:.2f} work_seconds={done - ready:.2f}")


if __name__ == "__main__":
    main()

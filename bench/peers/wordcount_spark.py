#!/usr/bin/env python3
"""Word count in PySpark, local mode with CORES threads: the peer of `lab-mapreduce run
--job wordcount`. Words are maximal runs of ASCII letters, lowercased, as in lab-mapreduce.
Writes `word count` lines to OUTDIR/part-*; prints start-up (JVM and session) and work
seconds apart.

usage: wordcount_spark.py INDIR OUTDIR [CORES]
"""
import os
import re
import sys
import time

from pyspark.sql import SparkSession

WORD = re.compile(r"[a-z]+")


def main():
    indir, outdir = sys.argv[1], sys.argv[2]
    cores = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    started = time.time()
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("wordcount")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")
    ready = time.time()
    counts = (
        sc.textFile(os.path.join(indir, "*.txt"))
        .flatMap(lambda line: WORD.findall(line.lower()))
        .map(lambda word: (word, 1))
        .reduceByKey(lambda a, b: a + b)
    )
    counts.map(lambda wc: f"{wc[0]} {wc[1]}").saveAsTextFile(outdir)
    done = time.time()
    spark.stop()
    print(f"startup_seconds={ready - started:.2f} work_seconds={done - ready:.2f}")


if __name__ == "__main__":
    main()

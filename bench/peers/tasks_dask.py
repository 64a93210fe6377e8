#!/usr/bin/env python3
"""Dask distributed as the peer of `lab-scheduler stress`: TASKS independent no-op tasks,
then a chain of STEPS tasks each depending on the one before, on a LocalCluster of WORKERS
single-threaded worker processes. Start-up (the cluster and a warm-up round) is timed apart.

usage: tasks_dask.py [TASKS] [STEPS] [WORKERS]       (20000 200 2 by default)
"""
import sys
import time

from distributed import Client, LocalCluster


def noop(x):
    return x


def inc(x):
    return x + 1


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    started = time.time()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.gather(client.map(noop, range(100)))
            ready = time.time()
            client.gather(client.map(noop, range(tasks), pure=False))
            independent = time.time() - ready
            chain_start = time.time()
            future = client.submit(inc, 0, pure=False)
            for _ in range(steps - 1):
                future = client.submit(inc, future, pure=False)
            assert future.result() == steps
            chain = time.time() - chain_start
    print(
        f"startup_seconds={ready - started:.2f} tasks={tasks} tasks_per_s={tasks / independent:.0f} "
        f"us_per_task={independent / tasks * 1e6:.1f} steps={steps} ms_per_step={chain / steps * 1e3:.2f}"
    )


if __name__ == "__main__":
    main()

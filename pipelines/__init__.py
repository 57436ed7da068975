"""leadlift: pipelines.

Every leadlift process (a DVC stage, the `leadlift` CLI, a Spark worker) imports this package before polars, so
polars' allocator is set up here. polars' jemalloc gives threads arenas of their own (four per core) and keeps what a
thread frees for 10 s in that thread's arena: memory a step frees (the split of a big batch) is not reused by the
threads of the next step (scoring), and the process holds both. One arena shares it: scoring 1M leads peaks about
80 MB lower, with half the page faults (benchmarks/bench_score.py). A `_RJEM_MALLOC_CONF` set by the user wins.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")

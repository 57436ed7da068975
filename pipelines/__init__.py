"""leadlift: pipelines.

Every leadlift process (a DVC stage, the `leadlift` CLI, a Spark worker) imports this package before polars, so
polars' allocator is set up here. polars' jemalloc gives threads arenas of their own (four per core) and keeps what a
thread frees in that thread's arena: memory a step frees (the split of a big batch) is not reused by the threads of
the next step (scoring), and the process holds both. One arena shares it: scoring 1M leads peaks about 80 MB lower,
with half the page faults (benchmarks/bench_score.py). Added to what `_RJEM_MALLOC_CONF` already says (polars puts
its own decay times there, and a parent process that imported polars passes them on); a `narenas` the user set wins.
"""

import os

_CONF = os.environ.get("_RJEM_MALLOC_CONF", "")
if "narenas" not in _CONF:
    os.environ["_RJEM_MALLOC_CONF"] = f"{_CONF},narenas:1" if _CONF else "narenas:1"

"""leadlift: models."""

import os

# LightGBM's OpenMP threads spin while they wait; on a 2-core machine with any other work running that made training
# 6-12x slower (benchmarks/bench_train.py). Passive waits give the same trees. Set before lightgbm starts OpenMP;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

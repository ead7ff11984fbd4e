"""dl101_jax: Deep Learning 101 (TFLearn, 2017) rebuilt as a functional JAX codebase.

The path through the code: config.py (what to run) -> data.py (what to learn)
-> models.py (the networks) -> optim.py (update rules) -> train.py (pure step,
scanned epoch) -> loop.py (fit: the host loop) -> report.py / plots.py
(console, TensorBoard, results) -> experiment.py (variants, seeds, groups).
"""

__version__ = "0.1.0"

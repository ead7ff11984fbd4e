import os

# Tests never download: a missing dataset must fail fast with the clear message.
os.environ.setdefault("DL101_OFFLINE", "1")

# Implicit rank promotion (a (C,) array silently broadcast against B x H x W x C) is an
# error in the tests, in this process and in the subprocesses helpers.env() starts.
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"

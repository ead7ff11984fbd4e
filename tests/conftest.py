import os

# Tests never download: a missing dataset must fail fast with the clear message.
os.environ.setdefault("DL101_OFFLINE", "1")

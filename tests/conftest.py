"""Suite-wide settings: offline, and one torch thread (tiny models on a shared 2-core machine run
faster single-threaded, and timings are not asserted in tests)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

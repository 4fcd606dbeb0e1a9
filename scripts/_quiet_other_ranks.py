"""Imported first by scripts/train.py: a process other than the main one of several shows no progress bars.

tqdm reads TQDM_DISABLE when it is imported, so this must run before anything imports tqdm. RANK is set by
the launcher (torchrun, accelerate launch); a single process has none.
"""

import os

if int(os.environ.get("RANK", "0")) > 0:
    os.environ.setdefault("TQDM_DISABLE", "1")

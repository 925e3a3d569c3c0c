"""Threads that hand data to each other inside one step: a short GIL switch interval while they run.

The dataset step validates rows on the main thread (pure Python and msgspec, holding the GIL) while a read-ahead
thread pulls the network and two writer threads write the splits. Each of those threads gives the GIL up for its
I/O and then has to take it back; with CPython's default switch interval (5 ms) it waits up to 5 ms every time,
so it falls behind, its queue runs dry or fills, and the main thread stalls on it (the "convoy effect"). On the
1M-row bench the main thread stalled 0.4-0.8 s on full writer queues and 0.3 s on an empty network queue; with
a 0.5 ms interval both fell under 0.2 s. Over TLS (16 KB records, each a GIL round trip for the reader) the
stalls on the network were 1.5-1.7 s at 5 ms, 0.8-1.2 s at 0.5 ms and 0.6-0.9 s at 0.1 ms (loopback https); at
0.1 ms the local file and s3:// (moto) runs were as fast or faster than at 0.5 ms (medians of 6: 2.9 vs 3.3 s
and 3.9 vs 4.0 s), so the interval is 0.1 ms.
"""

import contextlib
import sys
from collections.abc import Iterator

HANDOFF_S = 0.0001  # the switch interval while threads hand data to each other (CPython's default: 0.005)


@contextlib.contextmanager
def quick_handoffs(interval: float = HANDOFF_S) -> Iterator[None]:
    """Lower the GIL switch interval to ``interval`` (never raise it) for the block, then put it back."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(old)

"""A signal that lands in a destructor, where Python drops the handler's exception (prints
"Exception ignored" and goes on): how tqdm's __del__ once swallowed CI's SIGTERM."""

from __future__ import annotations

import signal


class SignalInDestructor:
    """`SignalInDestructor(sig)` with no reference kept: collected at once, and the handler
    of `sig` runs inside its __del__."""

    def __init__(self, sig):
        self.sig = sig

    def __del__(self):
        signal.raise_signal(self.sig)

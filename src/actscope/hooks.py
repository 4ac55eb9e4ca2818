"""HookSet: attach one hook per site, hand each tensor to the sink, detach on exit.

A hook body is a few lines: count the call, take the tensor (first element of a
tuple output, or the first positional input for point "in") and pass it on.
Every site must fire exactly once per forward; check_once() verifies that after
each forward with host-side counters (no device sync). Sites inside attention
(binding.attention_tap) are fed by one wrapper of the attention function
(attention.intercept), entered and left with the module hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from . import attention
from .sites import SiteBinding

Sink = Callable[[int, torch.Tensor], None]


def _first_tensor(obj):
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], torch.Tensor):
        return obj[0]
    if hasattr(obj, "last_hidden_state"):  # ModelOutput-like
        return obj.last_hidden_state
    return None


class HookSet:
    def __init__(self, model: nn.Module, bindings: list[SiteBinding], sink: Sink):
        self.model = model
        self.bindings = bindings
        self.sink = sink
        self.fires = [0] * len(bindings)
        self._handles: list = []
        self._stack = contextlib.ExitStack()

    def _make(self, i: int, point: str, tap=None):
        fires, sink = self.fires, self.sink

        if tap is not None:  # the binding computes its tensor from the module's inputs and output

            def tap_hook(module, args, kwargs, output):
                fires[i] += 1
                x = tap(module, args, kwargs, output)
                if x is not None:
                    sink(i, x)

            return tap_hook

        if point == "in":

            def pre_hook(module, args, kwargs):
                fires[i] += 1
                x = args[0] if args else next(iter(kwargs.values()), None)
                if isinstance(x, torch.Tensor):
                    sink(i, x)

            return pre_hook

        def hook(module, args, output):
            fires[i] += 1
            x = _first_tensor(output)
            if x is not None:
                sink(i, x)

        return hook

    def _attention_handler(self, i: int, tap):
        fires, sink = self.fires, self.sink

        def handler(module, query, key, value, mask, kwargs):
            fires[i] += 1
            sink(i, tap(module, query, key, value, mask, kwargs))

        return handler

    def __enter__(self) -> HookSet:
        try:
            handlers: dict[nn.Module, list] = {}
            for i, b in enumerate(self.bindings):
                mod = self.model.get_submodule(b.module_path)
                if b.attention_tap is not None:
                    handlers.setdefault(mod, []).append(self._attention_handler(i, b.attention_tap))
                    continue
                fn = self._make(i, b.site.point, b.tap)
                if b.tap is not None:
                    h = mod.register_forward_hook(fn, with_kwargs=True)
                elif b.site.point == "in":
                    h = mod.register_forward_pre_hook(fn, with_kwargs=True)
                else:
                    h = mod.register_forward_hook(fn)
                self._handles.append(h)
            if handlers:
                self._stack.enter_context(attention.intercept(handlers))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.close()

    def check_once(self) -> None:
        """Raise if a site did not fire exactly once since the last check; reset counters."""
        bad = [(b.site.name, n) for b, n in zip(self.bindings, self.fires) if n != 1]
        for i in range(len(self.fires)):
            self.fires[i] = 0
        if bad:
            detail = ", ".join(f"{name} fired {n}x" for name, n in bad[:5])
            raise RuntimeError(f"hooks must fire once per forward: {detail}")

"""When forwards keep what their backward needs.

By default a module keeps its op's cache while it is in training mode (and a loss always), and
an evaluation-mode forward keeps nothing. `no_grad()` keeps nothing anywhere (prediction, validation);
`enable_grad()` keeps caches in evaluation mode too, for a backward through a frozen, eval-mode
network (a perceptual loss, input gradients of a trained classifier, gradcheck in eval mode).
"""

from __future__ import annotations

import contextlib
import contextvars

_MODE = contextvars.ContextVar("diynn_grad_mode", default="training")


@contextlib.contextmanager
def _mode(mode):
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def no_grad():
    """A context manager: within the block no forward keeps anything for a backward.

    For prediction and validation: the memory of an evaluation. Use as `with diynn.no_grad(): ...`.
    """
    return _mode("off")


def enable_grad():
    """A context manager: within the block every forward keeps its cache, in evaluation mode too.

    For a backward through a frozen, eval-mode network (a perceptual loss, input gradients of a
    trained classifier, gradcheck in eval mode). Use as `with diynn.enable_grad(): ...`.
    """
    return _mode("on")


def keeps_cache(training: bool) -> bool:
    """Whether a forward of a module in `training` mode (True for losses) keeps its cache now."""
    mode = _MODE.get()
    return mode == "on" or (mode == "training" and training)


class PendingCaches:
    """The caches of forwards waiting for their backward, latest last (modules and losses).

    `training` (a module's mode; losses have none and count as training) decides with the grad
    mode whether a forward keeps its cache. At most `max_pending` are kept: older ones are dropped,
    and the backward that would have consumed one is then an error, never a wrong gradient.
    """

    max_pending = 64

    def _caches(self) -> list:
        return self.__dict__.setdefault("_pending", [])

    def save_for_backward(self, cache) -> None:
        """Keep this call's `cache` for the next `backward` when gradients are wanted now.

        They are in training mode, or under `diynn.enable_grad()`; never under `diynn.no_grad()`.

        Args:
            cache: what the backward needs, as the functional op returned it.
        """
        if not keeps_cache(getattr(self, "training", True)):
            return
        caches = self._caches()
        caches.append(cache)
        if len(caches) > self.max_pending:
            del caches[0]
            self.__dict__["_dropped"] = self.__dict__.get("_dropped", 0) + 1

    def saved_for_backward(self):
        """The latest kept cache, removed (each backward consumes one forward's).

        Raises:
            RuntimeError: no forward is pending, or its cache was dropped (more than `max_pending`
                forwards were waiting).
        """
        caches = self._caches()
        if caches:
            return caches.pop()
        name = type(self).__name__
        if self.__dict__.get("_dropped"):
            raise RuntimeError(
                f"{name}.backward: its forward's cache was dropped (more than {self.max_pending} forwards "
                "were pending without a backward)"
            )
        raise RuntimeError(
            f"{name}.backward: no pending forward. A forward keeps what backward needs in training mode "
            "or under diynn.enable_grad() (not in eval mode, not under diynn.no_grad()), and each "
            "backward consumes one forward's"
        )

    def clear_pending(self):
        """Forget the caches of forwards still waiting for a backward."""
        self._caches().clear()
        self.__dict__["_dropped"] = 0
        return self

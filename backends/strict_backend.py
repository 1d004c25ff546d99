"""array-api-strict: a CPU stand-in that rejects anything outside the array API standard.

Tests run on it to catch NumPy-only calls in `diynn`, which would break on CuPy too.
"""

import array_api_strict as xp

from .base import Backend


class StrictBackend(Backend):
    name = "array_api_strict"
    xp = xp
    device = xp.Device("CPU_DEVICE")

    def memory_owner(self, array):
        """The NumPy array whose memory the wrapped array uses (array-api-strict has no `base`)."""
        return super().memory_owner(array._array)

    def nbytes(self, array) -> int:
        """The bytes of the wrapped array's elements."""
        return int(array._array.nbytes)

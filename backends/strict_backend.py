"""array-api-strict: a CPU stand-in that rejects anything outside the array API standard.

Tests run on it to catch NumPy-only calls in `diynn`, which would break on CuPy too.
"""

import array_api_strict as xp

from .base import Backend


class StrictBackend(Backend):
    name = "array_api_strict"
    xp = xp
    device = xp.Device("CPU_DEVICE")

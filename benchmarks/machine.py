"""What a benchmark ran on: CPU, BLAS library and kernel (threadpoolctl), threads, GPU."""

from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info

    blas = [
        {key: pool.get(key) for key in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for pool in threadpool_info()
    ]
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "diynn_kernels": _diynn_kernels(),
        "gpu": gpu_name(),
    }


def _diynn_kernels() -> str:
    """The CPU kernels diynn runs (DIYNN_KERNELS), read without switching them on."""
    setting = os.environ.get("DIYNN_KERNELS", "compiled").strip().lower() or "compiled"
    if setting != "compiled":
        return setting
    from importlib.metadata import version

    return f"compiled (numba {version('numba')})"


def gpu_name() -> str | None:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # no CuPy, no driver or no device: a CPU-only machine
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

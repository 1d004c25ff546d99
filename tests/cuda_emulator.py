"""Runs the bodies of the CuPy backend's elementwise kernels on the CPU.

CuPy turns an ElementwiseKernel into a CUDA loop over the index `i`: each plain parameter is
one element (or a broadcast scalar), a `raw` one the whole array, and outputs are references.
This builds the same loop as C++ for g++, so every kernel body can be checked against the
portable NumPy code on a machine without a GPU. `precompile` and `precompile_for_gpu` build many
kernels in one compiler run (its start and <cmath> cost about 0.3 s a run, a kernel milliseconds).
"""

import ctypes
import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np

C_TYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long", "bool": "bool"}
HEADER = "#include <cmath>\n#include <algorithm>\nusing namespace std;\n"


def _parameters(text):
    """'T x, raw T y, int32 k' -> [(False, 'T', 'x'), (True, 'T', 'y'), (False, 'int32', 'k')]."""
    result = []
    for item in text.split(","):
        words = item.split()
        raw = words[0] == "raw"
        result.append((raw, *words[raw:]))
    return result


class Emulator:
    """Compiles kernels with g++ into `folder` (cached by source) and runs them on NumPy arrays."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._compiled = {}  # digest of a kernel's one-kernel source -> its compiled `run`
        self._ptx_entries = set()  # the kernels (run_<digest>) nvcc has compiled in a batch

    def precompile(self, kernels_and_types):
        """Compile every (kernel, types) with one g++ run; `run` then finds them compiled. Where the
        batch does not compile, each kernel is compiled alone when run, so its own error shows."""
        units = self._units(kernels_and_types, cuda=False)
        library = self.folder / f"batch_{_digest(''.join(units.values()))}.so"
        source_file = library.with_suffix(".cpp")
        source_file.write_text(HEADER + "".join(units.values()))
        command = ["g++", "-O1", "-shared", "-fPIC", "-o", str(library), str(source_file)]
        if subprocess.run(command, capture_output=True).returncode == 0:
            compiled = ctypes.CDLL(str(library))
            self._compiled.update((digest, getattr(compiled, f"run_{digest}")) for digest in units)

    def precompile_for_gpu(self, kernels_and_types):
        """`compile_for_gpu` for every (kernel, types) in one nvcc run; where the batch does not
        compile, each kernel is compiled alone by compile_for_gpu, so its own error shows."""
        units = self._units(kernels_and_types, cuda=True)
        source_file = self.folder / f"batch_{_digest(''.join(units.values()))}.cu"
        source_file.write_text("".join(units.values()))
        ptx = source_file.with_suffix(".ptx")
        if subprocess.run(["nvcc", "--ptx", "-o", str(ptx), str(source_file)], capture_output=True).returncode == 0:
            self._ptx_entries.update(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))

    def _units(self, kernels_and_types, cuda):
        """{digest of the one-kernel source: that kernel as run_<digest>, in a namespace of its own}."""
        units = {}
        for kernel, types in kernels_and_types:
            parameters = _parameters(kernel.in_params) + _parameters(kernel.out_params)
            digest = _digest(self.source(kernel, parameters, types, cuda))
            body = self.source(kernel, parameters, types, cuda, symbol=f"run_{digest}", header="")
            units[digest] = f"namespace unit_{digest} {{\n{body}}}\n"
        return units

    def run(self, kernel, *arguments):
        """Call `kernel` like a cupy.ElementwiseKernel with every output given; outputs are
        updated in place. Type placeholders (T, L, ...) take the dtype of their first array."""
        parameters = _parameters(kernel.in_params) + _parameters(kernel.out_params)
        if len(arguments) != len(parameters):
            raise TypeError(f"{kernel.name} takes {len(parameters)} arguments, got {len(arguments)}")
        types = {}
        for (_, type_name, _), value in zip(parameters, arguments):
            if type_name not in C_TYPES and isinstance(value, np.ndarray):
                types.setdefault(type_name, str(value.dtype))
        size = max(
            value.size for (raw, *_), value in zip(parameters, arguments) if not raw and isinstance(value, np.ndarray)
        )
        function = self._compile(kernel, parameters, types)
        call = [ctypes.c_longlong(size)]
        keep = []
        for (raw, type_name, name), value in zip(parameters, arguments):
            dtype = np.dtype(types.get(type_name, type_name))
            array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=dtype)
            if array.dtype != dtype or not array.flags.c_contiguous:
                raise TypeError(f"{kernel.name}: argument {name} must be a contiguous {dtype} array")
            keep.append(array)
            call.append(ctypes.c_void_p(array.ctypes.data))
            if not raw:
                if array.size not in (1, size):
                    raise ValueError(f"{kernel.name}: argument {name} has {array.size} elements, not 1 or {size}")
                call.append(ctypes.c_longlong(int(array.size == size)))
        function(*call)

    def _compile(self, kernel, parameters, types):
        source = self.source(kernel, parameters, types)
        digest = _digest(source)
        if digest not in self._compiled:
            library = self.folder / f"{kernel.name}_{digest}.so"
            source_file = library.with_suffix(".cpp")
            source_file.write_text(source)
            _build(["g++", "-O1", "-shared", "-fPIC", "-o", str(library), str(source_file)], kernel, source)
            self._compiled[digest] = ctypes.CDLL(str(library)).run
        return self._compiled[digest]

    def compile_for_gpu(self, kernel, types):
        """Compile the kernel as CUDA C++ to PTX with nvcc (no GPU needed): the device-side check."""
        source = self.source(kernel, _parameters(kernel.in_params) + _parameters(kernel.out_params), types, cuda=True)
        digest = _digest(source)
        if f"run_{digest}" in self._ptx_entries:  # compiled by precompile_for_gpu
            return
        source_file = self.folder / f"{kernel.name}_{digest}.cu"
        source_file.write_text(source)
        _build(["nvcc", "--ptx", "-o", str(source_file.with_suffix(".ptx")), str(source_file)], kernel, source)

    @staticmethod
    def source(kernel, parameters, types, cuda=False, symbol="run", header=HEADER):
        n_inputs = len(_parameters(kernel.in_params))
        signature, declarations = ["long long n"], []
        for index, (raw, type_name, name) in enumerate(parameters):
            c_type = C_TYPES[types.get(type_name, type_name)]
            constant = "const " if index < n_inputs else ""
            if raw:
                signature.append(f"{constant}{c_type}* {name}")
            else:
                signature += [f"{constant}{c_type}* {name}_data", f"long long {name}_step"]
                reference = f"{c_type} {name}" if constant else f"{c_type}& {name}"
                declarations.append(f"{constant}{reference} = {name}_data[i * {name}_step];")
        typedefs = "".join(f"typedef {C_TYPES[dtype]} {placeholder};\n" for placeholder, dtype in types.items())
        body = "\n".join(declarations) + "\n" + kernel.operation + ";"
        if cuda:  # one thread per index, as on the GPU; CUDA has the math overloads built in
            return (
                f'{typedefs}extern "C" __global__ void {symbol}({", ".join(signature)}) {{\n'
                f"const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
                f"if (i >= n) return;\n{body}\n}}\n"
            )
        return (
            f'{header}{typedefs}extern "C" void {symbol}({", ".join(signature)}) {{\n'
            f"for (long long i = 0; i < n; ++i) {{\n{body}\n}}\n}}\n"
        )


def _digest(source):
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _build(command, kernel, source):
    compiled = subprocess.run(command, capture_output=True, text=True)
    if compiled.returncode:
        raise AssertionError(f"{kernel.name} does not compile ({command[0]}):\n{compiled.stderr}\n{source}")

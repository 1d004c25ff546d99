"""Small generated data sets in the official file layout, and a loopback HTTP server serving them."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np

from diynn.datasets import KMNIST, DatasetSpec, write_idx

N_TRAIN, N_TEST = 30, 12


def make_files(folder: Path, seed=0, n_train=N_TRAIN, n_test=N_TEST, separable=False) -> dict[str, np.ndarray]:
    """Write the four .gz IDX files into `folder`; returns the arrays by file name.
    `separable`: each class gets its own bright row of pixels, so a model can learn it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        if separable:
            images[np.arange(n), 2 + 2 * labels, :] = 255
        arrays[f"{prefix}-images-idx3-ubyte.gz"] = images
        arrays[f"{prefix}-labels-idx1-ubyte.gz"] = labels
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def spec_for(folder: Path, base_url="http://127.0.0.1:9/", n_train=N_TRAIN, n_test=N_TEST) -> DatasetSpec:
    """KMNIST's spec with the checksums and sizes of the generated files in `folder`."""

    def file_spec(official, samples):
        data = (folder / official.name).read_bytes()
        payload = gzip.decompress(data)
        return dataclasses.replace(
            official,
            md5=hashlib.md5(data).hexdigest(),
            samples=samples,
            gz_size=len(data),
            sha256=hashlib.sha256(payload).hexdigest(),
            raw_size=len(payload),
        )

    return dataclasses.replace(
        KMNIST,
        base_url=base_url,
        train_images=file_spec(KMNIST.train_images, n_train),
        train_labels=file_spec(KMNIST.train_labels, n_train),
        test_images=file_spec(KMNIST.test_images, n_test),
        test_labels=file_spec(KMNIST.test_labels, n_test),
    )


class FileServer:
    """Serves `files` {name: bytes} on 127.0.0.1; names in `drop` are cut off half-way."""

    def __init__(self, files: dict[str, bytes], drop=()):
        files, drop = dict(files), set(drop)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                if name not in files:
                    self.send_error(404)
                    return
                body = files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in drop else body)
                if name in drop:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kmnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

"""Data-parallel training across processes and machines (ChainerMN's design, on MPI).

Every rank holds the whole model. `Trainer(..., communicator=Communicator())` then: broadcasts
rank 0's parameters and buffers at the start of `fit`; gives each rank its share of every shuffled
global batch (all ranks draw the same order); after each backward pass, averages the gradients
across ranks in one all-reduce of one flat buffer, weighted by each rank's share of the batch, so
that every rank applies the update one process would compute on the global batch; and sums the
loss, the accuracy counts and the NaN check across ranks. Batch norm normalises each rank's share
with that share's statistics (local, ChainerMN's default) and its running averages are averaged
across ranks at the end of each epoch. Start the ranks with `mpiexec -n 2 python script.py`.

MPI comes from mpi4py (`pip install -e ".[mpi]"`, whose mpich wheel brings `mpiexec`). On CuPy,
`NcclCommunicator` all-reduces on the GPUs through NCCL (`cupy.cuda.nccl`), with MPI only to
hand out NCCL's unique id; `communicator()` picks it where it can.
"""

from __future__ import annotations

import math
import sys
import time
import traceback

from ..backends import BackendError, backend_of


class Communicator:
    """Collectives over MPI between the ranks of an MPI communicator, for `Trainer(communicator=...)`.

    Arrays of any backend are accepted; a non-NumPy array travels through host memory.

    Args:
        comm: an mpi4py communicator; None (default): MPI.COMM_WORLD, every process of the job.

    Raises:
        ImportError: mpi4py is not installed.
    """

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ImportError('data-parallel training needs mpi4py: pip install -e ".[mpi]"') from error
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    # -- what the trainer uses --------------------------------------------------------------
    def shard(self, index):
        """This rank's contiguous share of a global batch's indices (shares differ by at most one).

        Args:
            index: (B,) the global batch's row indices.

        Returns:
            share: this rank's slice of `index`.
        """
        n = index.shape[0]
        return index[n * self.rank // self.size : n * (self.rank + 1) // self.size]

    def broadcast_model(self, model) -> None:
        """Rank 0's parameters and buffers copied into every rank's model, in one broadcast."""
        state = model.state_dict()
        if state:
            arrays = list(state.values())
            model.load_state_dict(dict(zip(state, _split(self._broadcast_flat(_concat(arrays)), arrays))))

    def allreduce_gradients(self, parameters, share: float) -> None:
        """grad <- sum over ranks of share_r * grad_r, for every parameter that takes gradients.

        With share_r = (rank r's samples) / (global batch), that is the gradient of the global
        batch's mean loss. One all-reduce of one flat buffer (a missing gradient counts as zeros).

        Args:
            parameters: the model's Parameters (frozen ones are skipped).
            share: this rank's share_r.
        """
        trained = [p for p in parameters if p.requires_grad]
        if not trained:
            return
        xp = backend_of(trained[0].data).xp
        grads = [p.grad if p.grad is not None else xp.zeros_like(p.data) for p in trained]
        flat = self._allreduce_flat(_concat(grads) * share)
        for parameter, grad in zip(trained, _split(flat, grads)):
            parameter.grad = grad

    def average_buffers(self, model) -> None:
        """Every buffer (batch norm's running statistics) replaced by its mean over the ranks."""
        state = model.state_dict()
        parameters = {name for name, _ in model.named_parameters()}
        buffers = {name: value for name, value in state.items() if name not in parameters}
        if buffers:
            arrays = list(buffers.values())
            averaged = _split(self._allreduce_flat(_concat(arrays)) / self.size, arrays)
            model.load_state_dict({**state, **dict(zip(buffers, averaged))})

    def sum(self, array):
        """The elementwise sum of `array` over the ranks (losses, counts)."""
        return self._allreduce_flat(array)

    def broadcast_object(self, value):
        """Rank 0's `value` (any picklable object) on every rank."""
        return self.comm.bcast(value, root=0)

    def abort_on_exception(self) -> None:
        """An uncaught exception on any rank aborts the whole job instead of leaving the other
        ranks waiting in a collective (what `python -m mpi4py` does)."""

        def hook(kind, value, trace):
            report = "".join(traceback.format_exception(kind, value, trace))
            sys.stderr.write(f"rank {self.rank}: aborting the MPI job after this error\n{report}")
            sys.stderr.flush()
            time.sleep(0.5)  # let the launcher forward the report before the job is torn down
            self.comm.Abort(1)

        sys.excepthook = hook

    # -- transport ---------------------------------------------------------------------------
    def _allreduce_flat(self, flat):
        backend = backend_of(flat)
        host = backend.to_numpy(flat)  # a new contiguous array: flat comes from a concatenation
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return backend.asarray(host)

    def _broadcast_flat(self, flat):
        backend = backend_of(flat)
        host = backend.to_numpy(flat)
        self.comm.Bcast(host, root=0)
        return backend.asarray(host)


class NcclCommunicator(Communicator):
    """The same collectives on GPU arrays through NCCL (the backend's collective group), GPU to GPU.

    One GPU per rank (rank r uses device r modulo its machine's GPUs). MPI only hands out NCCL's id.

    Args:
        backend: the CuPy backend.
        comm: an mpi4py communicator; None (default): MPI.COMM_WORLD.

    Raises:
        BackendError: the backend has no collective group (NCCL) here.
    """

    def __init__(self, backend, comm=None):
        super().__init__(comm)
        self.group = backend.collective_group(self.size, self.rank, self.broadcast_object)
        if self.group is None:
            raise BackendError(f"backend {backend.name!r} has no collective group (NCCL) here")

    def _allreduce_flat(self, flat):
        return self.group.allreduce_sum(flat)

    def _broadcast_flat(self, flat):
        return self.group.broadcast(flat)


def communicator(backend=None) -> Communicator:
    """The communicator for data-parallel training: NCCL on CuPy where it works, else MPI (host buffers).

    Args:
        backend: the model's backend; None (default): MPI.

    Returns:
        communicator: a NcclCommunicator or a Communicator.
    """
    if backend is not None and backend.name == "cupy":
        try:
            return NcclCommunicator(backend)
        except Exception:  # no NCCL in this CuPy, or it cannot start: MPI still works
            traceback.print_exc()
            sys.stderr.write("NCCL unavailable: gradients are all-reduced through MPI and host memory\n")
    return Communicator()


def _concat(arrays):
    xp = backend_of(arrays[0]).xp
    return xp.concat([xp.reshape(xp.astype(a, arrays[0].dtype, copy=False), (-1,)) for a in arrays])


def _split(flat, like):
    xp = backend_of(flat).xp
    pieces, start = [], 0
    for array in like:
        size = math.prod(array.shape)
        pieces.append(xp.astype(xp.reshape(flat[start : start + size], array.shape), array.dtype, copy=False))
        start += size
    return pieces

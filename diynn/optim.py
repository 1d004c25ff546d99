"""Optimisers that update `Parameter.data` in place from `Parameter.grad`.

Formulas follow torch.optim (SGD, Adam, AdamW) so that results can be compared with it. Each
update is a family of implementations with one signature behind one selection (`select_update`,
see functional/selection.py): the formula in portable array code, the same with NumPy's out= and no
temporaries, a compiled CPU loop, and a fused CUDA kernel (one launch per parameter, on CuPy).
Weight decay is applied in one place, `Optimizer.step`.
"""

from __future__ import annotations

import math

from . import arguments
from .backends import Elementwise, backend_of, flat_views, kernel, parallel_range
from .checks import check_gradient
from .functional.selection import Family, Implementation, compiles, fuses, select_elementwise


class Optimizer:
    """Base class of the optimisers: `step()` updates every parameter that has a gradient.

    `lr` may be changed between steps (by a schedule). Subclasses write `update_one`, the formula
    for one parameter.

    Args:
        parameters: the Parameters to update, e.g. `model.parameters()`; at least one.
        lr: the learning rate, > 0.
        weight_decay: wd >= 0, L2 decay: coupled (g <- g + wd p, added to the gradient) or, for an
            optimiser with `decoupled_weight_decay = True`, decoupled (p <- p (1 - lr wd) before the
            update).

    Raises:
        ValueError: no parameters, or an lr or weight_decay out of range.
    """

    decoupled_weight_decay = False

    def __init__(self, parameters, lr, weight_decay=0.0):
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        self.lr = arguments.real("lr (the learning rate, positive)", lr, low=0, low_open=True)
        self.weight_decay = arguments.real("weight_decay", weight_decay, low=0)
        self.state = {id(p): {} for p in self.parameters}
        # the parameters' names in step()'s errors, written once (not twice per parameter per step)
        self._gradient_names = [f"parameter {index}'s" for index in range(len(self.parameters))]

    def zero_grad(self):
        """Forget every parameter's gradient (they become None, as in PyTorch's default)."""
        for parameter in self.parameters:
            parameter.grad = None

    def state_dict(self) -> dict:
        """The learning rate and each parameter's state (moments, step counts), in parameter
        order; arrays are copies. Scratch buffers are left out."""
        return {
            "lr": float(self.lr),
            "state": [
                {key: _copied(value) for key, value in self.state[id(p)].items() if key not in SCRATCH}
                for p in self.parameters
            ],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()` of an optimiser of the same kind over parameters of the same shapes.

        Raises:
            ValueError: a state of another form, or for other parameters (the message names the first
                mismatch).
        """
        name = type(self).__name__
        if not isinstance(state, dict) or not isinstance(state.get("state"), list) or "lr" not in state:
            raise ValueError(f"{name}.load_state_dict expects a dict with 'lr' and a 'state' list")
        if len(state["state"]) != len(self.parameters):
            raise ValueError(
                f"{name}: the state is for {len(state['state'])} parameters, this optimiser has {len(self.parameters)}"
            )
        for index, (parameter, saved) in enumerate(zip(self.parameters, state["state"])):
            for key, value in saved.items():
                if hasattr(value, "shape") and tuple(value.shape) != tuple(parameter.shape):
                    raise ValueError(
                        f"{name}: state {key!r} of parameter {index} has shape {tuple(value.shape)}, "
                        f"the parameter {tuple(parameter.shape)}"
                    )
        self.lr = arguments.real("lr", state["lr"], low=0, low_open=True)
        for parameter, saved in zip(self.parameters, state["state"]):
            backend = backend_of(parameter.data)
            self.state[id(parameter)] = {
                key: backend.asarray(value, dtype=parameter.data.dtype) if hasattr(value, "shape") else value
                for key, value in saved.items()
            }

    def step(self):
        """Update, in place, every parameter that has a gradient and is not frozen (weight decay first).

        Raises:
            ValueError: a gradient of another shape than its parameter.
            TypeError: a gradient of another dtype than its parameter.
        """
        name = f"{type(self).__name__}.step"
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is None or not parameter.requires_grad:
                continue
            grad, data = parameter.grad, parameter.data
            check_gradient(grad, data.shape, data.dtype, name, self._gradient_names[index])
            if self.weight_decay and self.decoupled_weight_decay:
                parameter.data *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * parameter.data
            self.update_one(parameter.data, grad, self.state[id(parameter)])

    def update_one(self, p, g, state):
        """Update parameter array `p` in place from gradient `g` (what a subclass writes).

        Args:
            p: the parameter's data.
            g: its gradient (weight decay included where it is coupled), of p's shape and dtype.
            state: p's own dict (moments, step counts), kept between steps.
        """
        raise NotImplementedError


SCRATCH = ("work",)  # per-parameter buffers that hold no state between steps


def _copied(value):
    """A copy of a state array (a number as it is)."""
    return backend_of(value).xp.asarray(value, copy=True) if hasattr(value, "shape") else value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    b <- mu b + g (b = g on the first step);  p <- p - lr (g + mu b if nesterov else b)

    Args:
        parameters: the Parameters to update; at least one.
        lr: the learning rate, > 0.
        momentum: mu >= 0; 0 (default): plain SGD, p <- p - lr g.
        nesterov: Nesterov momentum (needs momentum > 0).
        weight_decay: coupled L2 decay wd >= 0, added to the gradient.

    Raises:
        ValueError: nesterov without momentum, or an argument out of range.
    """

    def __init__(self, parameters, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(parameters, lr, weight_decay)
        self.momentum = arguments.real("momentum", momentum, low=0)
        if nesterov and self.momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)

    def update_one(self, p, g, state):
        backend = backend_of(p)
        if not self.momentum:
            SGD_UPDATE.choose(backend, p).run(backend, g, self.lr, p)
            return
        if "momentum" not in state:  # from zeros, the first step gives b = g
            state["momentum"] = backend.xp.zeros_like(p)
        b = state["momentum"]
        SGD_MOMENTUM_UPDATE.choose(backend, p, b).run(backend, g, self.lr, self.momentum, self.nesterov, p, b)


def select_update(backend, p, *state) -> str:
    """The optimisers' selection from (backend, parameter, its state arrays): a fused CUDA kernel on
    CuPy, the compiled loop where the kernels are on and the parameter is large enough to pay for a
    parallel launch (all arrays C-contiguous: their flat views are themselves), else the portable
    array code (on NumPy with out=, without temporaries)."""
    name = select_elementwise(backend, p.size)
    if name == "compiled" and not _contiguous_compiled(backend, p, *state):
        name = "portable"
    return "in_place" if name == "portable" and backend.ufunc_out else name


def _contiguous_compiled(backend, *updated) -> bool:
    return compiles(backend) and all(a.flags.c_contiguous for a in updated)


def _has_out(backend, *updated) -> bool:
    return backend.ufunc_out


def _in_dtype_of(p, *numbers):
    """The compiled updates' scalars in p's dtype: a Python float would reach numba as float64 and
    make the loop compute every element in float64 (the float32 SGD update ran 2x slower)."""
    return [p.dtype.type(number) for number in numbers]


def _sgd_portable(backend, g, lr, p):
    p -= lr * g


def _sgd_fused(backend, g, lr, p):
    backend.elementwise(SGD_STEP)(g, lr, p)


def _sgd_compiled(backend, g, lr, p):
    backend.compiled(_sgd_step_flat)(*flat_views(g), *_in_dtype_of(p, lr), *flat_views(p))


@kernel
def _sgd_step_flat(g, lr, p):
    """p -= lr g over flat arrays in parallel (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        p[i] -= lr * g[i]


SGD_STEP = Elementwise("T g, T lr", "T p", "p -= lr * g", "diynn_sgd")


def _sgd_momentum_portable(backend, g, lr, momentum, nesterov, p, b):
    b *= momentum
    b += g
    p -= lr * (g + momentum * b if nesterov else b)


def _sgd_momentum_fused(backend, g, lr, momentum, nesterov, p, b):
    backend.elementwise(SGD_MOMENTUM_STEP)(g, lr, momentum, int(nesterov), p, b)


def _sgd_momentum_compiled(backend, g, lr, momentum, nesterov, p, b):
    scalars = _in_dtype_of(p, lr, momentum)
    backend.compiled(_sgd_momentum_step_flat)(*flat_views(g), *scalars, nesterov, *flat_views(p, b))


@kernel
def _sgd_momentum_step_flat(g, lr, momentum, nesterov, p, b):
    """SGD with momentum over flat arrays in parallel, each element once (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        b[i] = momentum * b[i] + g[i]
        p[i] -= lr * (g[i] + momentum * b[i] if nesterov else b[i])


SGD_MOMENTUM_STEP = Elementwise(
    "T g, T lr, T momentum, int32 nesterov",
    "T p, T b",
    """
    b = momentum * b + g;
    p -= lr * (nesterov ? g + momentum * b : b);
    """,
    "diynn_sgd_momentum",
)


def _update_family(name, fused, compiled, in_place, portable) -> Family:
    """An optimiser update's family: fused on CuPy, compiled on contiguous arrays, NumPy with out=,
    portable (select_update chooses)."""
    return Family(
        name,
        select_update,
        {
            "fused": Implementation(fused, serves=fuses),
            "compiled": Implementation(compiled, serves=_contiguous_compiled),
            "in_place": Implementation(in_place, serves=_has_out),
            "portable": Implementation(portable),
        },
    )


# SGD's portable bodies make one temporary at most: their "in_place" is the portable code
SGD_UPDATE = _update_family("sgd", _sgd_fused, _sgd_compiled, _sgd_portable, _sgd_portable)
SGD_MOMENTUM_UPDATE = _update_family(
    "sgd_momentum", _sgd_momentum_fused, _sgd_momentum_compiled, _sgd_momentum_portable, _sgd_momentum_portable
)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)

    Args:
        parameters: the Parameters to update; at least one.
        lr: the learning rate, > 0.
        betas: (b1, b2), each in [0, 1).
        eps: added to the denominator, >= 0.
        weight_decay: the coupled L2 term wd >= 0 added to the gradient (see AdamW for the
            decoupled form).

    Raises:
        ValueError: betas that are not a pair, or an argument out of range.
    """

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(arguments.real(f"betas[{i}]", b, low=0, high=1, high_open=True) for i, b in enumerate(betas))
        self.eps = arguments.real("eps", eps, low=0)

    def update_one(self, p, g, state):
        backend = backend_of(p)
        if not state:
            state.update(step=0, m=backend.xp.zeros_like(p), v=backend.xp.zeros_like(p))
        state["step"] += 1
        m, v, t = state["m"], state["v"], state["step"]
        beta1, beta2 = self.betas
        # the bias corrections folded into two scalars: p -= lr c / (1 - b1^t) * m / (sqrt(v) + eps c)
        c = (1 - beta2**t) ** 0.5
        step_size, eps = self.lr * c / (1 - beta1**t), self.eps * c
        # 1 - beta in double precision: in float32, 1 - 0.999f is off by 1.3e-5 relative
        rate1, rate2 = 1 - beta1, 1 - beta2
        update = ADAM_UPDATE.choose(backend, p, m, v).run
        update(backend, g, step_size, rate1, rate2, eps, p, m, v, state)


def _adam_portable(backend, g, step_size, rate1, rate2, eps, p, m, v, state):
    m += rate1 * (g - m)
    v += rate2 * (g * g - v)
    denominator = backend.xp.sqrt(v)
    denominator += eps
    p -= step_size * (m / denominator)


def _adam_in_place(backend, g, step_size, rate1, rate2, eps, p, m, v, state):
    """Adam's update with out= into one work buffer: no temporaries (allocating them costs more
    than the maths: 2.2x faster MLP step)."""
    xp, work = backend.xp, state.setdefault("work", backend.xp.empty_like(p))
    xp.subtract(g, m, out=work)
    work *= rate1
    m += work
    xp.multiply(g, g, out=work)
    work -= v
    work *= rate2
    v += work
    xp.sqrt(v, out=work)
    work += eps
    xp.divide(m, work, out=work)
    work *= step_size
    p -= work


def _adam_fused(backend, g, step_size, rate1, rate2, eps, p, m, v, state):
    backend.elementwise(ADAM_STEP)(g, step_size, rate1, rate2, eps, p, m, v)


def _adam_compiled(backend, g, step_size, rate1, rate2, eps, p, m, v, state):
    scalars = _in_dtype_of(p, step_size, rate1, rate2, eps)
    backend.compiled(_adam_step_flat)(*flat_views(g), *scalars, *flat_views(p, m, v))


@kernel
def _adam_step_flat(g, step_size, rate1, rate2, eps, p, m, v):
    """Adam's update over flat arrays in parallel, each element once (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        m[i] += rate1 * (g[i] - m[i])
        v[i] += rate2 * (g[i] * g[i] - v[i])
        p[i] -= step_size * (m[i] / (math.sqrt(v[i]) + eps))


ADAM_STEP = Elementwise(
    "T g, T step_size, T rate1, T rate2, T eps",
    "T p, T m, T v",
    """
    m += rate1 * (g - m);
    v += rate2 * (g * g - v);
    p -= step_size * m / (sqrt(v) + eps);
    """,
    "diynn_adam",
)


ADAM_UPDATE = _update_family("adam", _adam_fused, _adam_compiled, _adam_in_place, _adam_portable)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p <- p (1 - lr wd), then Adam.

    Args:
        parameters: the Parameters to update; at least one.
        lr: the learning rate, > 0.
        betas: (b1, b2), each in [0, 1).
        eps: added to Adam's denominator, >= 0.
        weight_decay: wd >= 0 (default 0.01).
    """

    decoupled_weight_decay = True

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(parameters, lr, betas, eps, weight_decay)

"""Optimisers that update `Parameter.data` in place from `Parameter.grad`.

Formulas follow torch.optim (SGD, Adam, AdamW) so that results can be compared with it. Each
optimiser's `update_one` is its formula in portable array code, with the fused CUDA kernel (one
launch per parameter, on CuPy) beside it. Weight decay is applied in one place, `Optimizer.step`.
"""

from __future__ import annotations

from . import arguments
from .backends import Elementwise, backend_of, kernel, parallel_range
from .checks import check_gradient


class Optimizer:
    """Base class: `step()` updates every parameter that has a gradient; `lr` may be changed
    between steps (by a schedule).

    weight_decay: L2 decay, coupled (g <- g + wd p, added to the gradient) or, for an optimiser
    with `decoupled_weight_decay = True`, decoupled (p <- p (1 - lr wd) before the update).
    """

    decoupled_weight_decay = False

    def __init__(self, parameters, lr, weight_decay=0.0):
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        self.lr = arguments.real("lr (the learning rate, positive)", lr, low=0, low_open=True)
        self.weight_decay = arguments.real("weight_decay", weight_decay, low=0)
        self.state = {id(p): {} for p in self.parameters}

    def zero_grad(self):
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
        """Continue from a `state_dict()` of an optimiser of the same kind over parameters of the
        same shapes; ValueError naming the first mismatch."""
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
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is None or not parameter.requires_grad:
                continue
            grad, data = parameter.grad, parameter.data
            check_gradient(grad, data.shape, data.dtype, f"{type(self).__name__}.step", f"parameter {index}'s")
            if self.weight_decay and self.decoupled_weight_decay:
                parameter.data *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * parameter.data
            self.update_one(parameter.data, grad, self.state[id(parameter)])

    def update_one(self, p, g, state):
        """Update parameter array `p` in place from gradient `g`; `state` is p's own dict."""
        raise NotImplementedError


SCRATCH = ("work",)  # per-parameter buffers that hold no state between steps


def _copied(value):
    """A copy of a state array (a number as it is)."""
    return backend_of(value).xp.asarray(value, copy=True) if hasattr(value, "shape") else value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    b <- mu b + g (b = g on the first step);  p <- p - lr (g + mu b if nesterov else b)
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
            fused = backend.elementwise(SGD_STEP)
            compiled = None if fused is not None else _compiled_in_place(backend, _sgd_step_flat, p)
            if fused is not None:
                fused(g, self.lr, p)
            elif compiled is not None:
                compiled(*_flat(backend, g), self.lr, *_flat(backend, p))
            else:
                p -= self.lr * g
            return
        if "momentum" not in state:  # from zeros, the first step gives b = g
            state["momentum"] = backend.xp.zeros_like(p)
        b = state["momentum"]
        fused = backend.elementwise(SGD_MOMENTUM_STEP)
        if fused is not None:
            fused(g, self.lr, self.momentum, int(self.nesterov), p, b)
            return
        compiled = _compiled_in_place(backend, _sgd_momentum_step_flat, p, b)
        if compiled is not None:
            compiled(*_flat(backend, g), self.lr, self.momentum, self.nesterov, *_flat(backend, p, b))
            return
        b *= self.momentum
        b += g
        p -= self.lr * (g + self.momentum * b if self.nesterov else b)


@kernel
def _sgd_step_flat(g, lr, p):
    """p -= lr g over flat arrays in parallel (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        p[i] -= lr * g[i]


@kernel
def _sgd_momentum_step_flat(g, lr, momentum, nesterov, p, b):
    """SGD with momentum over flat arrays in parallel, each element once (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        b[i] = momentum * b[i] + g[i]
        p[i] -= lr * (g[i] + momentum * b[i] if nesterov else b[i])


def _compiled_in_place(backend, function, *updated):
    """Kernel `function` compiled, where the arrays it updates are C-contiguous (so that their flat
    views are themselves), else None."""
    compiled = backend.compiled(function, size=updated[0].size)
    return compiled if compiled is not None and all(a.flags.c_contiguous for a in updated) else None


def _flat(backend, *arrays):
    return [backend.xp.reshape(a, (-1,)) for a in arrays]


SGD_STEP = Elementwise("T g, T lr", "T p", "p -= lr * g", "diynn_sgd")

SGD_MOMENTUM_STEP = Elementwise(
    "T g, T lr, T momentum, int32 nesterov",
    "T p, T b",
    """
    b = momentum * b + g;
    p -= lr * (nesterov ? g + momentum * b : b);
    """,
    "diynn_sgd_momentum",
)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; `weight_decay` is the coupled L2 term
    added to the gradient (see AdamW for the decoupled form).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
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
        fused = backend.elementwise(ADAM_STEP)
        if fused is not None:
            fused(g, step_size, rate1, rate2, eps, p, m, v)
            return
        compiled = _compiled_in_place(backend, _adam_step_flat, p, m, v)
        if compiled is not None:
            compiled(*_flat(backend, g), step_size, rate1, rate2, eps, *_flat(backend, p, m, v))
            return
        if backend.ufunc_out:  # NumPy: the same formula in one work buffer (2.2x faster MLP step)
            work = state.setdefault("work", backend.xp.empty_like(p))
            _adam_step_in_place(backend.xp, g, step_size, rate1, rate2, eps, p, m, v, work)
            return
        m += rate1 * (g - m)
        v += rate2 * (g * g - v)
        denominator = backend.xp.sqrt(v)
        denominator += eps
        p -= step_size * (m / denominator)


def _adam_step_in_place(xp, g, step_size, rate1, rate2, eps, p, m, v, work):
    """Adam's update with out= into `work`: no temporaries (allocating them costs more than the maths)."""
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


@kernel
def _adam_step_flat(g, step_size, rate1, rate2, eps, p, m, v):
    """Adam's update over flat arrays in parallel, each element once (compiled CPU path)."""
    for i in parallel_range(p.shape[0]):
        m[i] += rate1 * (g[i] - m[i])
        v[i] += rate2 * (g[i] * g[i] - v[i])
        p[i] -= step_size * (m[i] / (v[i] ** 0.5 + eps))


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


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p <- p (1 - lr wd), then Adam."""

    decoupled_weight_decay = True

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(parameters, lr, betas, eps, weight_decay)

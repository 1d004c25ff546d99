"""Optimisers that update `Parameter.data` in place from `Parameter.grad`.

Formulas follow torch.optim (SGD, Adam, AdamW) so that results can be compared with it.
"""

from backends import get_backend


class Optimizer:
    """Base class: `step()` updates every parameter that has a gradient; `lr` may be changed
    between steps (by a schedule)."""

    def __init__(self, parameters, lr):
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.state = {id(p): {} for p in self.parameters}

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def step(self):
        for parameter in self.parameters:
            if parameter.grad is not None:
                self.update(parameter, parameter.grad, self.state[id(parameter)])

    def update(self, parameter, grad, state):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    g <- g + wd p;  b <- mu b + g (b = g on the first step);  p <- p - lr (g + mu b if nesterov else b)
    """

    def __init__(self, parameters, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(parameters, lr)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def update(self, parameter, grad, state):
        backend = get_backend()
        if self.momentum and "momentum" not in state:  # from zeros, the first step gives buffer = d
            state["momentum"] = backend.xp.zeros_like(parameter.data)
        backend.sgd_update(
            parameter.data,
            grad,
            state.get("momentum"),
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; `weight_decay` is the coupled L2 term
    added to the gradient (see AdamW for the decoupled form).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def update(self, parameter, grad, state):
        backend = get_backend()
        if self.weight_decay:
            grad = grad + self.weight_decay * parameter.data
        if not state:
            state["step"] = 0
            state["m"] = backend.xp.zeros_like(parameter.data)
            state["v"] = backend.xp.zeros_like(parameter.data)
        state["step"] += 1
        beta1, beta2 = self.betas
        backend.adam_update(
            parameter.data,
            grad,
            state["m"],
            state["v"],
            lr=self.lr,
            beta1=beta1,
            beta2=beta2,
            eps=self.eps,
            step=state["step"],
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p <- p (1 - lr wd), then Adam."""

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(parameters, lr, betas, eps, weight_decay=0.0)
        self.decoupled_weight_decay = weight_decay

    def update(self, parameter, grad, state):
        parameter.data *= 1 - self.lr * self.decoupled_weight_decay
        super().update(parameter, grad, state)

# %% [markdown]
# # 8. Looking inside a network
#
# A loss curve says *that* training goes badly, not *where*. This notebook looks inside: what each
# layer computes and keeps (`diynn.summary`), what its activations, gradients and updates do while
# it trains (`diynn.Monitor`), and whether a layer's backward pass is the derivative of its
# forward (`diynn.compare_with_torch`). The examples are the classic ways a network fails: a
# sigmoid network whose weights are far too large, a learning rate far too high, and a
# hand-written backward pass with a mistake in it.

# %%
import os
from pathlib import Path

import numpy as np
from IPython.display import Image, display

import diynn
from diynn import datasets
from diynn.backends import backend_of

QUICK = os.environ.get("DIYNN_NOTEBOOK_QUICK") == "1"

OUT = Path("outputs")
OUT.mkdir(exist_ok=True)

fashion = datasets.load_fashion_mnist()
n = 2000 if QUICK else 6000  # a few thousand images are enough to see the problems
x, y = fashion.x_train[:n], fashion.y_train[:n]
x_test, y_test = fashion.x_test[:2000], fashion.y_test[:2000]
EPOCHS = 1 if QUICK else 3

# %% [markdown]
# ## What the model holds: `diynn.summary`
#
# The multilayer perceptron of notebook 2: 784 pixels, two hidden layers, 10 logits. The summary
# runs the model once on zeros and lists, per layer, the output's shape, the parameters, the
# memory the layer keeps for its backward pass (per batch of `batch_size`) and the forward FLOPs.

# %%
print(diynn.summary(diynn.mlp([784, 256, 128, 10], rng=0), (784,), batch_size=64))

# %% [markdown]
# ## What the monitor measures
#
# `diynn.Monitor` is a callback for `Trainer.fit`. Every `every` steps it hooks each layer for one
# step (forward and backward hooks, removed after that step, so the other steps run as usual) and
# records, per layer, the mean and spread of its output and of its output's gradient, how many
# ReLU units fired, how many tanh / sigmoid outputs are saturated; and per weight, the gradient's
# norm and the size of the optimiser's update relative to the weight, $|\Delta W| / |W|$ (a healthy
# run sits near $10^{-3}$). Over a window of sampled steps it turns those numbers into sentences,
# once per layer, when one crosses a threshold.
#
# ## A sigmoid network with weights drawn from N(0, 1)
#
# With 784 inputs and weights of variance 1, a pre-activation sums hundreds of terms: its standard
# deviation is about $\sqrt{784 \cdot E[x^2]} \approx 10$. Most sigmoids then sit in their flat
# tails, where $\sigma'(z) = \sigma(z)(1 - \sigma(z)) \approx 0$, and the gradient that crosses
# them is multiplied by almost nothing.


# %%
def poorly_initialised_sigmoid_mlp(seed=0):
    """An MLP of sigmoids whose weights are drawn from N(0, 1): far too large for 784 or 256 inputs."""
    model = diynn.mlp([784, 256, 128, 10], activation="sigmoid", rng=seed)
    rng = np.random.default_rng(seed)
    for layer in model:
        if isinstance(layer, diynn.Linear):
            layer.weight.data = rng.normal(size=layer.weight.shape).astype(np.float32)
    return model


def train(model, lr, monitor, epochs=EPOCHS):
    """SGD on the images with `monitor` among the callbacks; the test accuracy."""
    trainer = diynn.Trainer(model, diynn.CrossEntropyLoss(), diynn.SGD(model.parameters(), lr=lr))
    trainer.fit(x, y, epochs=epochs, batch_size=64, callbacks=[monitor])
    return diynn.accuracy(model, x_test, y_test)


sigmoid_monitor = diynn.Monitor(every=10, window=5)
sigmoid_accuracy = train(poorly_initialised_sigmoid_mlp(), 0.1, sigmoid_monitor)
print(f"test accuracy {sigmoid_accuracy:.3f}")
print("verdicts:", *sigmoid_monitor.verdicts, sep="\n  ")

# %% [markdown]
# The verdicts name the layers. The figure shows why: the sigmoids' outputs pile up at 0 and 1
# (first row); each sigmoid shrinks the gradient that crosses it tenfold or more (second row:
# compare the spread of (3) Sigmoid's output gradient with that of (2) Linear's, and (1) with
# (0)); and so the first layer's updates are near $10^{-4}$ of its weights (bottom): it hardly
# learns.

# %%
sigmoid_monitor.figure(OUT / "monitor_sigmoid.png")
display(Image(OUT / "monitor_sigmoid.png"))

# %% [markdown]
# ## Kaiming initialisation with ReLU
#
# The same network with ReLUs and Kaiming's initialisation (weights of variance $2 / \text{fan-in}$,
# `diynn.mlp`'s default), which keeps the activations' variance from layer to layer, trained the
# same way:

# %%
relu_monitor = diynn.Monitor(every=10, window=5)
relu_accuracy = train(diynn.mlp([784, 256, 128, 10], rng=0), 0.1, relu_monitor)
print(f"test accuracy {relu_accuracy:.3f} (sigmoids from N(0, 1): {sigmoid_accuracy:.3f})")
print("verdicts:", ", ".join(map(str, relu_monitor.verdicts)) or "none")
print(f"at step {relu_monitor.history[-1]['step']}:")
for name, stats in relu_monitor.history[-1]["parameters"].items():
    print(f"  {name:9s} |grad| {stats['grad_norm']:.1e}   |update| / |W| {10 ** stats['log10_update_ratio']:.1e}")

# %%
relu_monitor.figure(OUT / "monitor_relu.png")
display(Image(OUT / "monitor_relu.png"))

# %% [markdown]
# No verdict: the activations spread out, every hidden unit fires for some images, the gradients
# reach the first layer with a spread of the same order as at the top, and the updates stay near
# $10^{-3}$ to $10^{-2}$ of the weights.
#
# ## A learning rate far too high
#
# The same ReLU network with a learning rate ten times larger. The monitor samples every other
# step here (`every=2`): sampling often is cheap for a short hunt.

# %%
fast_monitor = diynn.Monitor(every=2, window=5)
try:
    train(diynn.mlp([784, 256, 128, 10], rng=0), 1.0, fast_monitor, epochs=1)
except diynn.TrainingDiverged as error:
    print("TrainingDiverged:", error)
print("verdicts:", *(f"step {v.step}: {v}" for v in fast_monitor.verdicts), sep="\n  ")

# %% [markdown]
# The monitor said so within the first ten steps: each update moved the weights by a tenth of
# their size or more. Such steps overshoot; a ReLU layer whose pre-activations were pushed below
# zero for every image stops firing and then stops learning (its gradient is zero). The loss
# became NaN later, when `fit` checked the epoch.
#
# ## A backward pass with a mistake: `diynn.compare_with_torch`
#
# A layer of our own: Swish (SiLU), $y = x\,\sigma(x)$, whose derivative by the product rule is
# $\sigma(x) + x\,\sigma(x)(1 - \sigma(x))$. This version forgets the second term, a mistake that
# still trains (the gradient has the right sign for most inputs) and so is easy to miss.


# %%
class ForgetfulSwish(diynn.Module):
    """y = x sigmoid(x), with a backward that forgets the product rule's second term."""

    def forward(self, x):
        xp = backend_of(x).xp
        s = 1 / (1 + xp.exp(-x))
        self.save_for_backward((x, s))
        return x * s

    def backward(self, grad_output, input_grad=True):
        x, s = self.saved_for_backward()
        return grad_output * s  # should be grad_output * (s + x * s * (1 - s))


class Swish(ForgetfulSwish):
    def backward(self, grad_output, input_grad=True):
        x, s = self.saved_for_backward()
        return grad_output * (s + x * s * (1 - s))


# %% [markdown]
# `compare_with_torch` builds the PyTorch copy of the model (our layer maps to `torch.nn.SiLU`
# through `modules=`), runs both forward and backward in float64, and compares every layer's
# output, input gradient and parameter gradients, in the order the passes produce them: the first
# layer that disagrees is where the error starts.

# %%
try:
    import torch
except ImportError:
    torch = None

if torch is None and QUICK:
    print("PyTorch is not installed: the comparison is skipped (pip install -e '.[torch]')")
else:
    for layer in (ForgetfulSwish, Swish):
        model = diynn.Sequential(diynn.Linear(784, 32, rng=0), layer(), diynn.Linear(32, 10, rng=1))
        comparison = diynn.compare_with_torch(
            model, x[:16], y[:16], loss=diynn.CrossEntropyLoss(), modules={layer: lambda module: torch.nn.SiLU()}
        )
        print(f"{layer.__name__}:\n{comparison}\n")

# %% [markdown]
# The forgetful layer's outputs agree (its forward is right) but its input gradient does not, and
# every gradient below it inherits the error: the first Linear's weight gradient differs too. The
# table points at the layer; the corrected backward agrees with PyTorch to rounding error.
# (`diynn.gradcheck(layer, x)` finds such a mistake without PyTorch, one layer at a time; the
# comparison checks a whole model, and the forward too.)
#
# ## What to take away
#
# - Saturated sigmoids or tanh units: the initialisation (Xavier for tanh / sigmoid, Kaiming for
#   ReLU) or the inputs' scale; normalisation layers help.
# - Dead ReLUs: a learning rate too high, or biases pushed far below zero.
# - Updates far above $10^{-3}$ of the weights: lower the learning rate; far below: raise it, or
#   look for vanishing gradients (the gradients' spread per layer, in the figure).
# - A model that trains, but worse than it should: compare each layer with PyTorch.

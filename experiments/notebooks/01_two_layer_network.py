# %% [markdown]
# # 1. A two-layer network, by hand
#
# The seed's first notebook (`2_layers_NN.ipynb`): one hidden layer, trained on a regression and on a
# binary classification. Every layer of diynn carries its own forward pass and the backward pass
# derived by hand; this notebook writes the maths next to the calls that run it.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

import diynn

QUICK = os.environ.get("DIYNN_NOTEBOOK_QUICK") == "1"  # the test suite runs every notebook this way
EPOCHS = 20 if QUICK else 300

# %% [markdown]
# ## The layers
#
# **Linear.** For a batch $x \in \mathbb{R}^{N \times d}$, weights $W \in \mathbb{R}^{k \times d}$ and bias $b$:
#
# $$y = x W^\top + b .$$
#
# Given the gradient of the loss with respect to the output, $g = \partial L / \partial y$, the chain
# rule gives the three gradients the layer must return or store:
#
# $$\frac{\partial L}{\partial W} = g^\top x, \qquad \frac{\partial L}{\partial b} = \sum_n g_n, \qquad
# \frac{\partial L}{\partial x} = g W .$$
#
# **tanh.** $y = \tanh(x)$ and $\partial L / \partial x = g \odot (1 - y^2)$: the backward pass only
# needs the output it kept from the forward pass.
#
# **Mean squared error.** $L = \frac{1}{N}\sum_n \lVert y_n - t_n \rVert^2 / k$, so
# $\partial L / \partial y = 2 (y - t) / (N k)$.
#
# Each of these is a few lines of diynn, with `forward` and `backward` side by side:

# %%
layer = diynn.Linear(3, 2, rng=0)
x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
y = layer(x)
g = np.ones_like(y)  # dL/dy for L = sum(y)
dx = layer.backward(g)
print("dL/dx equals g W:", np.allclose(dx, g @ layer.weight.data))
print("dL/dW equals g^T x:", np.allclose(layer.weight.grad, g.T @ x))

# %% [markdown]
# ## A gradient check
#
# A hand-derived backward pass is only as good as its check. `diynn.gradcheck` compares every
# gradient of a module with central finite differences, $\frac{L(\theta + \epsilon) - L(\theta - \epsilon)}{2\epsilon}$,
# in float64, and raises naming the entry that disagrees.

# %%
network = diynn.mlp([1, 16, 1], activation="tanh", rng=0)
print("gradients agree:", diynn.gradcheck(network, np.random.default_rng(1).normal(size=(5, 1))))

# %% [markdown]
# ## Regression: $y = \sin(2x) + x/2$ + noise
#
# A 2-layer network with 32 tanh units, the MSE loss and Adam. `Trainer.fit` runs the loop:
# forward, loss, backward through every layer in reverse, optimiser step. It draws a progress bar
# in Jupyter (with ipywidgets, which `pip install -e ".[notebooks]"` brings) and prints one line
# per epoch; `progress=False` keeps these 300 short epochs quiet.

# %%
rng = np.random.default_rng(0)
x = rng.uniform(-3, 3, size=(400, 1))
y = np.sin(2 * x) + 0.5 * x + 0.1 * rng.normal(size=x.shape)
model = diynn.mlp([1, 32, 1], activation="tanh", rng=0)
trainer = diynn.Trainer(model, diynn.MSELoss(), diynn.Adam(model.parameters(), lr=0.01), metric=None)
history = trainer.fit(x, y, epochs=EPOCHS, batch_size=32, progress=False)  # 300 short epochs: quiet

grid = np.linspace(-3, 3, 300)[:, None]
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.scatter(x, y, s=6, alpha=0.5, label="data")
left.plot(grid, diynn.predict(model, grid), color="C3", lw=2, label="network")
left.set_title("fit")
left.legend()
right.plot(history["loss"])
right.set_yscale("log")
right.set_title("training MSE per epoch")
right.set_xlabel("epoch")
plt.show()

# %% [markdown]
# ## Binary classification: two half-moons
#
# Two classes, two logits and the softmax cross-entropy (notebook 2 derives it). ReLU units this
# time: $y = \max(x, 0)$ and $\partial L/\partial x = g \odot [x > 0]$.

# %%
points, labels = make_moons(n_samples=400, noise=0.2, random_state=0)
x_train, x_test, y_train, y_test = train_test_split(points, labels, test_size=0.25, stratify=labels, random_state=0)
classifier = diynn.mlp([2, 32, 2], activation="relu", rng=0)
trainer = diynn.Trainer(classifier, diynn.CrossEntropyLoss(), diynn.Adam(classifier.parameters(), lr=0.01))
history = trainer.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, progress=False)
print(f"held-out accuracy: {diynn.accuracy(classifier, x_test, y_test):.3f}")

xx, yy = np.meshgrid(np.linspace(-2, 3, 200), np.linspace(-1.5, 2, 200))
regions = diynn.predict(classifier, np.c_[xx.ravel(), yy.ravel()]).argmax(1).reshape(xx.shape)
plt.contourf(xx, yy, regions, alpha=0.25, cmap="coolwarm")
plt.scatter(*x_test.T, c=y_test, cmap="coolwarm", s=10, edgecolor="k", linewidth=0.3)
plt.title("decision regions and held-out points")
plt.show()

# %% [markdown]
# ## What this shows
#
# - The backward formulas above are all a network needs: the trainer chains them, last layer first.
# - 32 tanh units fit the smooth regression curve; 32 ReLU units bend the boundary around the
#   moons and classify about 98% of the held-out points (`experiments/two_layer.py` gives the same
#   on its own split). As in the seed, one hidden layer is enough for these 2-D problems; the next
#   notebooks need more.

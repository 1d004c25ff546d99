# %% [markdown]
# # 3. Autoencoders
#
# The seed's `autoencodeur.ipynb`: compress each 28x28 image to a short code and rebuild it.
# An autoencoder is two networks trained as one, $\hat{x} = g(f(x))$, on the reconstruction
# error alone; no label is used.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

import diynn
from diynn import datasets
from diynn_experiments.autoencoders import flat, mse_per_pixel

QUICK = os.environ.get("DIYNN_NOTEBOOK_QUICK") == "1"

fashion = datasets.load_fashion_mnist(flat=False)
n = 2000 if QUICK else 20000
x_train, x_test = fashion.x_train[:n], fashion.x_test[: 500 if QUICK else 10000]
EPOCHS = 1 if QUICK else 5

# %% [markdown]
# ## The parts
#
# The **dense** autoencoder is an MLP 784-256-128-$k$ and its mirror image, ending in a sigmoid
# $\sigma(z) = 1/(1+e^{-z})$ so that pixels land in $[0, 1]$; its backward pass is
# $\partial L/\partial z = g \odot \sigma(z)(1-\sigma(z))$, again from the kept output.
#
# The **convolutional** one downsamples with two 4x4 stride-2 convolutions and upsamples with two
# *transposed* convolutions. A transposed convolution is the backward pass of a convolution used
# as a forward pass: where a convolution maps an image to columns (im2col) and multiplies,
# $y = W \cdot \mathrm{im2col}(x)$, the transposed one multiplies first and scatters the columns
# back, $y = \mathrm{col2im}(W^\top x)$; its own backward pass is then an ordinary convolution.
# The gradient check covers both:

# %%
rng = np.random.default_rng(0)
small = diynn.conv_autoencoder(4, channels=(2, 3), image_size=8, rng=0)
for name, parameter in small.named_parameters():
    if name.endswith("bias"):  # zero biases can put a ReLU input exactly on its kink, where no derivative exists
        parameter.data = rng.normal(size=parameter.shape).astype(np.float32)
print("conv autoencoder gradients agree:", diynn.gradcheck(small, rng.random((2, 1, 8, 8))))

# %% [markdown]
# ## Training both at latent size 16

# %%
models = {"dense": diynn.dense_autoencoder(16, rng=0), "conv": diynn.conv_autoencoder(16, rng=0)}
reconstructions = {}
for kind, model in models.items():
    inputs = flat(x_train) if kind == "dense" else x_train
    optimizer = diynn.Adam(model.parameters(), lr=2e-3)
    trainer = diynn.Trainer(model, diynn.MSELoss(), optimizer, metric=None)
    trainer.fit(inputs, inputs, epochs=EPOCHS, batch_size=128, callbacks=[diynn.CosineLR(optimizer, EPOCHS)])
    test_inputs = flat(x_test) if kind == "dense" else x_test
    reconstructions[kind] = diynn.predict(model, test_inputs).reshape(x_test.shape)
    print(f"{kind}: test MSE per pixel {mse_per_pixel(reconstructions[kind], x_test):.5f}")

pca = PCA(16, random_state=0).fit(flat(x_train))
reconstructions["PCA"] = np.clip(pca.inverse_transform(pca.transform(flat(x_test))), 0, 1).reshape(x_test.shape)
print(f"PCA-16: test MSE per pixel {mse_per_pixel(reconstructions['PCA'], x_test):.5f}")

# %%
rows = {"original": x_test, **reconstructions}
figure, axes = plt.subplots(len(rows), 10, figsize=(10, 1.1 * len(rows)))
for axis_row, (name, images) in zip(axes, rows.items()):
    for axis, image in zip(axis_row, images[:10]):
        axis.imshow(image[0], cmap="gray_r")
        axis.set_xticks([])
        axis.set_yticks([])
    axis_row[0].set_ylabel(name, rotation=0, ha="right")
plt.show()

# %% [markdown]
# ## Reading the results
#
# At the same code size, both autoencoders reconstruct better than PCA, the best *linear* code:
# the non-linear decoder is what the extra training buys. The convolutional one keeps edges and
# textures slightly better for far fewer parameters. All three lose the fine print (logos,
# stripes): the loss is a pixel average, and those details are few pixels. The README's
# `experiments/autoencoder.py` table gives the full curve over latent sizes 2-64.

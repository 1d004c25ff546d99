# %% [markdown]
# # 5. Classification after reconstruction
#
# The seed's `pretraitement.ipynb` asks: can an autoencoder serve as preprocessing? We train the
# same classifier on the original images, on their reconstructions and on the latent codes, and
# compare test accuracies.

# %%
import os

import diynn
from diynn import datasets
from diynn_experiments.autoencoders import classifier_accuracy, encode, flat, reconstruct

QUICK = os.environ.get("DIYNN_NOTEBOOK_QUICK") == "1"

fashion = datasets.load_fashion_mnist(flat=False)
n = 1000 if QUICK else 20000
x_train, y_train = fashion.x_train[:n], fashion.y_train[:n]
x_test, y_test = fashion.x_test[: 500 if QUICK else 10000], fashion.y_test[: 500 if QUICK else 10000]
EPOCHS = 1 if QUICK else 5

# %% [markdown]
# ## The autoencoder (conv, latent 32) and the judge (an MLP 256-128)
#
# `classifier_accuracy` (from the experiments' helpers) standardises the features, trains an MLP
# with Adam and a cosine schedule, and returns the test accuracy; with no hidden layer it is a
# linear probe.

# %%
autoencoder = diynn.conv_autoencoder(32, rng=0)
optimizer = diynn.Adam(autoencoder.parameters(), lr=2e-3)
trainer = diynn.Trainer(autoencoder, diynn.MSELoss(), optimizer, metric=None)
trainer.fit(x_train, x_train, epochs=EPOCHS, batch_size=128, callbacks=[diynn.CosineLR(optimizer, EPOCHS)])

inputs = {
    "original images": (flat(x_train), flat(x_test)),
    "reconstructions": (
        flat(reconstruct(autoencoder, "conv", x_train)),
        flat(reconstruct(autoencoder, "conv", x_test)),
    ),
    "latent codes (32)": (encode(autoencoder, "conv", x_train), encode(autoencoder, "conv", x_test)),
}
epochs = 1 if QUICK else 10
for name, (train, test) in inputs.items():
    mlp = classifier_accuracy(train, y_train, test, y_test, [256, 128], epochs, seed=1, progress=False)
    probe = classifier_accuracy(train, y_train, test, y_test, [], epochs, seed=1, progress=False)
    print(f"{name:>20}: MLP {mlp:.4f}, linear probe {probe:.4f}")

# %% [markdown]
# ## Reading the results
#
# As in the seed, the classifier loses accuracy on reconstructions (about 1.5 points in the
# README's `experiments/preprocessing.py` run) and the linear probe on the codes stays far below
# the one on pixels: the pixel loss spends the code on what is bright and large, not on what tells
# a shirt from a T-shirt. An autoencoder is a compressor, not a feature extractor for
# classification, unless its loss asks for class-relevant structure: notebook 7 tries a perceptual
# loss and self-supervised pretraining.

# %% [markdown]
# # 4. The latent space: clusters and t-SNE
#
# The seed's `visualisation.ipynb`: what do the autoencoder's codes keep? We embed them in 2-D
# with t-SNE, cluster them with k-means, and measure how well the clusters match the classes
# that the autoencoder never saw.

# %%
import os

import matplotlib.pyplot as plt
from sklearn.cluster import KMeans
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score

import diynn
from diynn import datasets
from diynn_experiments.autoencoders import encode, flat, knn_accuracy

QUICK = os.environ.get("DIYNN_NOTEBOOK_QUICK") == "1"

fashion = datasets.load_fashion_mnist(flat=False)
n = 2000 if QUICK else 60000
x_train, y_train = fashion.x_train[:n], fashion.y_train[:n]
x_test, y_test = fashion.x_test[: 300 if QUICK else 3000], fashion.y_test[: 300 if QUICK else 3000]

# %% [markdown]
# ## A dense autoencoder with a 16-number code

# %%
model = diynn.dense_autoencoder(16, rng=0)
optimizer = diynn.Adam(model.parameters(), lr=2e-3)
epochs = 1 if QUICK else 10
trainer = diynn.Trainer(model, diynn.MSELoss(), optimizer, metric=None)
trainer.fit(
    flat(x_train),
    flat(x_train),
    epochs=epochs,
    batch_size=128,
    callbacks=[diynn.CosineLR(optimizer, epochs)],
)
codes_train, codes_test = encode(model, "dense", x_train), encode(model, "dense", x_test)

# %% [markdown]
# ## Neighbours and clusters
#
# k-NN accuracy asks whether a code's neighbours share its class; the adjusted Rand index (ARI)
# compares k-means' 10 clusters with the 10 classes (1 = the same partition, 0 = chance).

# %%
for name, (train, test) in {
    "codes (16)": (codes_train, codes_test),
    "pixels (784)": (flat(x_train), flat(x_test)),
}.items():
    clusters = KMeans(10, n_init=4, random_state=0).fit_predict(test)
    knn, ari = knn_accuracy(train, y_train, test, y_test), adjusted_rand_score(y_test, clusters)
    print(f"{name}: k-NN accuracy {knn:.3f}, k-means ARI {ari:.3f}")

# %%
points = TSNE(random_state=0, init="pca").fit_transform(codes_test)
colours = plt.get_cmap("tab10")
for label, name in enumerate(fashion.class_names):
    chosen = y_test == label
    plt.scatter(*points[chosen].T, s=3, color=colours(label), label=name)
plt.legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
plt.title("t-SNE of the 16-number codes (test images)")
plt.xticks([])
plt.yticks([])
plt.show()

# %% [markdown]
# ## Reading the results
#
# Sixteen numbers keep almost everything k-NN needs: its accuracy on the codes is close to that on
# all 784 pixels. The t-SNE map shows why, and where it fails: trousers, bags and the three kinds
# of footwear form islands, while shirts, T-shirts, pullovers and coats share one continent. The
# clusters follow shape and brightness, which is what a pixel loss rewards, and k-means' ARI stays
# well below 1: the classes that matter to a classifier are not the directions that matter to
# reconstruction. Notebook 7 attacks exactly that.

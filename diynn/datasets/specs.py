"""What each data set is made of: its files, where they are published, and their checksums."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileSpec:
    """One published .gz IDX file.

    Attributes:
        name: the file's name, as published.
        md5: of the .gz bytes as served (checks downloads).
        samples: the first IDX dimension.
        gz_size: the .gz bytes' length, when published.
        sha256: of the decompressed payload (checks local copies that were recompressed, as
            Debian's are), when known.
        raw_size: the decompressed payload's length, when known.
    """

    name: str
    md5: str
    samples: int
    gz_size: int | None = None
    sha256: str | None = None
    raw_size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set is made of, where it is published, and where a system copy may be.

    Attributes:
        name: the data set's folder name in the cache, e.g. "fashion-mnist".
        base_url: where the files are published (the file name is appended).
        train_images: the training images' file.
        train_labels: the training labels' file.
        test_images: the test images' file.
        test_labels: the test labels' file.
        class_names: the name of each class, by label.
        system_dirs: folders a system package installs the files into.
        system_package_hint: how to install such a package, for the not-found message.
        npz_names: the same four arrays as .npz files (one array each), an alternative local layout.
    """

    name: str
    base_url: str
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    class_names: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    system_package_hint: str = ""
    npz_names: tuple[str, str, str, str] | None = None

    @property
    def files(self) -> tuple[FileSpec, FileSpec, FileSpec, FileSpec]:
        """The four files: training images and labels, test images and labels."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    train_images=FileSpec(
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        60000,
        sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        raw_size=47040016,
    ),
    train_labels=FileSpec(
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
        60000,
        sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        raw_size=60008,
    ),
    test_images=FileSpec(
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
        10000,
        sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        raw_size=7840016,
    ),
    test_labels=FileSpec(
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
        10000,
        sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        raw_size=10008,
    ),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_package_hint="on Debian/Ubuntu: apt-get install dataset-fashion-mnist",
)
"""Fashion-MNIST (Zalando): the four .gz IDX files with their checksums, and the folder of Debian's
package dataset-fashion-mnist."""

KMNIST = DatasetSpec(
    name="kmnist",
    base_url="http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    train_images=FileSpec("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7", 60000, gz_size=18165135),
    train_labels=FileSpec("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344", 60000, gz_size=29497),
    test_images=FileSpec("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7", 10000, gz_size=3041136),
    test_labels=FileSpec("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134", 10000, gz_size=5120),
    # Romanised readings of the ten hiragana classes (kmnist_classmap.csv).
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    npz_names=("kmnist-train-imgs.npz", "kmnist-train-labels.npz", "kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
)
"""Kuzushiji-MNIST (CODH): the four .gz IDX files with their checksums, or the same arrays as .npz files."""

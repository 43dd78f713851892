"""load_mnist: the bundled copy, folders of your own, and every inconsistency named."""
import gzip
import hashlib
import shutil

import numpy as np
import pytest

from minicnn.data import DataError, load_mnist
from minicnn.data import mnist as mnist_module
from minicnn.data.idx import read_content

# The published SHA-256 digests of the (decompressed) canonical MNIST files.
KNOWN_DIGESTS = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
BUNDLED = mnist_module.BUNDLED_MNIST_DIR


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("MINICNN_DATA", raising=False)


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_folder(path, n=6, labels=None, images=None, split="train", gz=False):
    """A tiny MNIST-layout folder for one split."""
    path.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    names = mnist_module.MNIST_FILES[split]
    for name, array in zip(names, (images, labels)):
        data = idx_bytes(np.asarray(array))
        (path / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return images, labels


# --- the bundled copy --------------------------------------------------------------------------

@pytest.mark.parametrize("split, n, first, counts", [
    ("train", 60000, [5, 0, 4, 1, 9], [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
    ("test", 10000, [7, 2, 1, 0, 4], [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
])
def test_bundled_mnist(split, n, first, counts):
    images, labels = load_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels[:5].tolist() == first
    assert np.bincount(labels).tolist() == counts
    assert images.min() == 0 and images.max() == 255
    assert not images.flags.writeable and not labels.flags.writeable


def test_bundled_files_have_the_known_digests():
    for name, digest in KNOWN_DIGESTS.items():
        assert hashlib.sha256(read_content(BUNDLED / f"{name}.gz")).hexdigest() == digest
    lines = (BUNDLED / "SHA256SUMS").read_text().split("\n")
    assert {line.split()[1]: line.split()[0] for line in lines if line} == KNOWN_DIGESTS


def test_bundled_readme_carries_the_attribution():
    text = (BUNDLED / "README.md").read_text()
    for words in ("LeCun", "Cortes", "Burges", "Attribution-Share Alike 3.0"):
        assert words in text


def test_repeated_loads_are_cached():
    first = load_mnist("test")
    assert load_mnist("test")[0] is first[0] and load_mnist("test")[1] is first[1]


def test_bad_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown split 'val'; the valid splits are 'train', 'test'"):
        load_mnist("val")


def test_bundled_copy_is_always_checked(tmp_path, monkeypatch):
    for name in mnist_module.MNIST_FILES["test"]:
        shutil.copy(BUNDLED / f"{name}.gz", tmp_path)
    monkeypatch.setattr(mnist_module, "BUNDLED_MNIST_DIR", tmp_path)
    with pytest.raises(DataError, match="SHA256SUMS is missing; reinstall minicnn"):
        load_mnist("test")
    labels_digest = KNOWN_DIGESTS["t10k-labels-idx1-ubyte"]
    (tmp_path / "SHA256SUMS").write_text(
        f"{'0' * 64}  t10k-images-idx3-ubyte\n{labels_digest}  t10k-labels-idx1-ubyte\n")
    with pytest.raises(DataError, match=rf"t10k-images-idx3-ubyte\.gz: SHA-256 mismatch .*"
                                        rf"expected {'0' * 64}"):
        load_mnist("test")


# --- folders of your own -----------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_root_with_a_copy_of_the_test_split(tmp_path, gz):
    for name in mnist_module.MNIST_FILES["test"]:
        if gz:
            shutil.copy(BUNDLED / f"{name}.gz", tmp_path)
        else:
            (tmp_path / name).write_bytes(read_content(BUNDLED / f"{name}.gz"))
    shutil.copy(BUNDLED / "SHA256SUMS", tmp_path)
    images, labels = load_mnist("test", root=tmp_path)
    bundled_images, bundled_labels = load_mnist("test")
    np.testing.assert_array_equal(images, bundled_images)
    np.testing.assert_array_equal(labels, bundled_labels)
    assert labels.dtype == np.int64


def test_minicnn_data_environment_variable(tmp_path, monkeypatch):
    images, labels = make_folder(tmp_path / "fashion", split="test", gz=True)
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "fashion"))
    got_images, got_labels = load_mnist("test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere \(from MINICNN_DATA\) is not a directory"):
        load_mnist("test")


def test_a_missing_root_names_where_it_came_from(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere \(from root, --data-dir on the command line\) is not a directory"):
        load_mnist("test", root=tmp_path / "nowhere")


def test_missing_file_names_both_names_looked_for(tmp_path):
    make_folder(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte not found: expected .*"
                                                r"train-images-idx3-ubyte or .*train-images-idx3-ubyte\.gz"):
        load_mnist("train", root=tmp_path)


def test_changed_files_are_read_again(tmp_path):
    make_folder(tmp_path, n=6)
    assert len(load_mnist(root=tmp_path)[0]) == 6
    make_folder(tmp_path, n=7)
    assert len(load_mnist(root=tmp_path)[0]) == 7


def content_digest(path):
    return hashlib.sha256(read_content(path)).hexdigest()


def test_sha256sums_in_a_folder_is_checked(tmp_path):
    make_folder(tmp_path, gz=True)
    names = mnist_module.MNIST_FILES["train"]
    sums = tmp_path / "SHA256SUMS"
    # digests of the content, under the names without .gz
    sums.write_text("".join(f"{content_digest(tmp_path / (n + '.gz'))}  {n}\n" for n in names))
    assert len(load_mnist(root=tmp_path)[0]) == 6
    # digests of the .gz files themselves, as `sha256sum *.gz` writes them
    sums.write_text("".join(f"{hashlib.sha256((tmp_path / (n + '.gz')).read_bytes()).hexdigest()}  {n}.gz\n"
                            for n in names))
    assert len(load_mnist(root=tmp_path)[0]) == 6
    sums.write_text(f"{'1' * 64}  {names[0]}.gz\n{'2' * 64}  {names[1]}\n")
    with pytest.raises(DataError, match=rf"SHA-256 mismatch: expected {'1' * 64} \(from SHA256SUMS\)"):
        load_mnist(root=tmp_path)
    sums.write_text(f"{'1' * 64}  something-else\n")
    with pytest.raises(DataError, match=r"lists no digest for train-images-idx3-ubyte\.gz: expected a line "
                                        r"for 'train-images-idx3-ubyte' or 'train-images-idx3-ubyte\.gz'"):
        load_mnist(root=tmp_path)


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8),
     r"5 images in .*train-images-idx3-ubyte but 4 labels in .*train-labels-idx1-ubyte; "
     r"expected one label per image"),
    (np.zeros((3, 28, 28), np.uint8), np.array([1, 10, 12], np.uint8),
     r"train-labels-idx1-ubyte: label 10 at index 1 is outside 0-9 \(2 labels out of range in all\)"),
    (np.zeros((3, 27, 28), np.uint8), np.zeros(3, np.uint8),
     r"expected images of 28x28 pixels, shape \(N, 28, 28\); found \(3, 27, 28\)"),
    (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8),
     r"train-images-idx3-ubyte: expected shape \(N, 28, 28\), found \(3, 784\)"),
    (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8),
     r"train-labels-idx1-ubyte: expected shape \(N,\), found \(3, 1\)"),
])
def test_inconsistent_folders(tmp_path, images, labels, message):
    make_folder(tmp_path, images=images, labels=labels)
    with pytest.raises(DataError, match=message):
        load_mnist(root=tmp_path)


def test_non_uint8_idx_is_refused(tmp_path):
    make_folder(tmp_path)
    labels = np.arange(6, dtype=">i2")
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x0B, 1]) + np.asarray([6], ">u4").tobytes() + labels.tobytes())
    with pytest.raises(DataError, match=r"expected uint8 elements \(IDX type 0x08\), found int16"):
        load_mnist(root=tmp_path)


def test_corrupt_file_in_folder(tmp_path):
    make_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated"):
        load_mnist(root=tmp_path)

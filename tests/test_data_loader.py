"""DataLoader and train_val_split: batches, seeded shuffling, coverage, disjoint splits."""
import numpy as np
import pytest

from minicnn.backend import get_backend
from minicnn.data import DataLoader, mnist_train_transform, normalize, train_val_split


def dataset(n=10, size=4):
    """Image k is filled with the value k, and its label is k: both tell where a sample went."""
    images = np.repeat(np.arange(n, dtype=np.uint8), size * size).reshape(n, size, size)
    return images, np.arange(n, dtype=np.int64)


def epoch_labels(loader):
    return [y.tolist() for _, y in loader]


def test_batches_in_order_without_shuffle():
    images, labels = dataset(10)
    loader = DataLoader(images, labels, batch_size=4)
    assert len(loader) == 3 and loader.num_samples == 10
    batches = list(loader)
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert x.shape == (4, 1, 4, 4) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(4) / 255)  # default: [0, 1] floats


def test_drop_last():
    images, labels = dataset(10)
    loader = DataLoader(images, labels, batch_size=4, drop_last=True)
    assert len(loader) == 2 and loader.num_samples == 10
    assert [len(y) for _, y in loader] == [4, 4]
    assert len(DataLoader(images, labels, batch_size=5, drop_last=True)) == 2
    assert len(DataLoader(images, labels, batch_size=64)) == 1


def test_shuffle_covers_every_sample_once_per_epoch():
    images, labels = dataset(23)
    loader = DataLoader(images, labels, batch_size=5, shuffle=True, generator=np.random.default_rng(0))
    for _ in range(3):
        seen = []
        for x, y in loader:
            np.testing.assert_allclose(x[:, 0, 0, 0] * 255, y, atol=1e-4)  # images travel with labels
            seen += y.tolist()
        assert sorted(seen) == list(range(23)) and seen != list(range(23))


def test_shuffle_is_seeded_and_changes_each_epoch():
    images, labels = dataset(50)

    def run(seed):
        loader = DataLoader(images, labels, batch_size=8, shuffle=True, generator=np.random.default_rng(seed))
        return epoch_labels(loader), epoch_labels(loader)

    first, second = run(0)
    assert run(0) == (first, second)
    assert first != second
    assert run(1)[0] != first


def test_transform_gets_the_uint8_batch_and_the_generator():
    images, labels = dataset(6)
    generator = np.random.default_rng(0)
    calls = []

    def transform(x, g):
        calls.append((x.dtype, x.shape, g))
        return normalize(x)

    loader = DataLoader(images, labels, batch_size=4, generator=generator, transform=transform)
    x, _ = next(iter(loader))
    assert calls[0] == (np.uint8, (4, 4, 4), generator)
    np.testing.assert_allclose(x, normalize(images[:4]))


def test_mnist_training_pipeline_is_reproducible(rng):
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 20)

    def run():
        loader = DataLoader(images, labels, batch_size=8, shuffle=True, generator=np.random.default_rng(4),
                            transform=mnist_train_transform(), device=get_backend())
        return list(loader)

    a, b = run(), run()
    assert a[0][0].shape == (8, 1, 28, 28) and a[0][0].dtype == np.float32 and a[-1][0].shape[0] == 4
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, r"batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, ValueError, r"batch_size must be an integer >= 1, got 2.5"),
    ({"batch_size": True}, ValueError, r"batch_size must be an integer >= 1, got True"),
    ({"shuffle": True}, ValueError, r"shuffle=True needs a generator"),
    ({"generator": 42}, TypeError, r"generator must be a numpy.random.Generator .* got int"),
    ({"transform": "normalize"}, TypeError, r"transform must be callable"),
    ({"device": "cuda"}, TypeError, r"device must be a minicnn Backend .* got 'cuda'"),
])
def test_loader_arguments_are_checked(kwargs, error, message):
    images, labels = dataset(4)
    with pytest.raises(error, match=message):
        DataLoader(images, labels, **kwargs)


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((5, 4, 4)), np.zeros(4), r"5 images but 4 labels; expected one label per image"),
    (np.zeros((5, 16)), np.zeros(5),
     r"expected images of shape \(N, H, W\) or \(N, C, H, W\), found \(5, 16\)"),
    (np.zeros((5, 4, 4)), np.zeros((5, 1)), r"expected labels of shape \(N,\), found \(5, 1\)"),
])
def test_mismatched_data_is_refused(images, labels, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(images, labels)
    with pytest.raises(ValueError, match=message):
        train_val_split(images, labels, 0.2, seed=0)


def test_train_val_split_is_disjoint_complete_and_seeded():
    images, labels = dataset(100)
    (train_x, train_y), (val_x, val_y) = train_val_split(images, labels, 0.15, seed=3)
    assert len(val_y) == 15 and len(train_y) == 85
    assert not set(train_y) & set(val_y)
    assert sorted(np.concatenate([train_y, val_y])) == list(range(100))
    assert (np.diff(train_y) > 0).all() and (np.diff(val_y) > 0).all()  # original order kept
    np.testing.assert_array_equal(train_x[:, 0, 0], train_y)           # images stay with labels
    (_, again), (_, val_again) = train_val_split(images, labels, 0.15, seed=3)
    np.testing.assert_array_equal(val_again, val_y)
    assert train_val_split(images, labels, 0.15, seed=4)[1][1].tolist() != val_y.tolist()


def test_train_val_split_edges():
    images, labels = dataset(10)
    (train_x, train_y), (val_x, val_y) = train_val_split(images, labels, 0.0, seed=0)
    assert len(train_y) == 10 and val_x.shape == (0, 4, 4)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"val_fraction must be in \[0, 1\), got {bad}"):
            train_val_split(images, labels, bad, seed=0)


@pytest.mark.parametrize("as_list, convert", [("images", "np.asarray(images, dtype=np.uint8)"),
                                              ("labels", "np.asarray(labels)")])
def test_lists_are_refused_when_built(as_list, convert):
    images, labels = dataset(4)
    data = {"images": images, "labels": labels}
    data[as_list] = data[as_list].tolist()
    message = f"{as_list} must be an array (NumPy or CuPy), got list; convert it first, e.g. {convert}"
    for build in (lambda: DataLoader(data["images"], data["labels"]),
                  lambda: train_val_split(data["images"], data["labels"], 0.25, seed=0)):
        with pytest.raises(TypeError) as info:
            build()
        assert str(info.value) == message


def test_labels_must_be_class_indices():
    images, _ = dataset(3)
    with pytest.raises(ValueError) as info:
        DataLoader(images, np.array([0.0, 1.7, 2.0]))
    assert str(info.value) == "labels must be whole numbers (class indices), found 1.7"
    with pytest.raises(ValueError, match=r"^labels must be whole numbers \(class indices\), found nan$"):
        train_val_split(images, np.array([0.0, np.nan, 2.0]), 0.3, seed=0)
    with pytest.raises(TypeError, match=r"^labels must be integer class indices, found dtype <U1$"):
        DataLoader(images, np.array(["0", "1", "2"]))
    # Whole floats are class indices too, and come out as int64.
    _, y = next(iter(DataLoader(images, np.array([0.0, 1.0, 2.0]))))
    assert y.tolist() == [0, 1, 2] and y.dtype == np.int64

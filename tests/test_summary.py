"""The model summary: parameter counts and output shapes."""
import numpy as np
import pytest

from minicnn import nn
from minicnn.models import MnistBNCNN, MnistCNN
from minicnn.summary import parameter_counts, summary, summary_rows


def test_mnist_cnn_summary_text():
    text = summary(MnistCNN(seed=0))
    assert "Total params: 421,642" in text
    assert "Trainable params: 421,642" in text
    assert "Non-trainable params: 0" in text
    assert "Buffers" not in text
    assert "conv1 (Conv2d)" in text and "(None, 32, 28, 28)" in text
    assert "fc1 (Linear)" in text and "401,536" in text


def test_mnist_cnn_rows():
    rows = summary_rows(MnistCNN(seed=0))
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                         "flatten", "fc1", "relu3", "fc2", "log_softmax"]
    assert by_name["conv1"]["output_shape"] == (None, 32, 28, 28)
    assert by_name["pool1"]["output_shape"] == (None, 32, 14, 14)
    assert by_name["pool2"]["output_shape"] == (None, 64, 7, 7)
    assert by_name["flatten"]["output_shape"] == (None, 3136)
    assert by_name["fc2"]["output_shape"] == (None, 10)
    assert [by_name[n]["params"] for n in ("conv1", "conv2", "fc1", "fc2")] == [320, 18496, 401536, 1290]
    assert sum(r["params"] for r in rows) == 421_642


def test_batchnorm_model_counts_running_stats_as_buffers():
    model = MnistBNCNN(seed=0)
    counts = parameter_counts(model)
    # BatchNorm2d adds gamma and beta per channel: 2 * (32 + 64) = 192 parameters.
    assert counts["total"] == counts["trainable"] == 421_642 + 192
    assert counts["non_trainable"] == 0
    # running_mean and running_var per channel plus one num_batches_tracked each.
    assert counts["buffers"] == 2 * (32 + 64) + 2
    text = summary(model, batch_size=8)
    assert "Total params: 421,834" in text
    assert "Trainable params: 421,834" in text
    assert "Non-trainable params: 0" in text
    assert "Buffers (running statistics and counters, not trained): 194" in text
    assert "bn1 (BatchNorm2d)" in text and "(8, 32, 28, 28)" in text


def test_summary_leaves_the_model_as_it_was():
    model = MnistBNCNN(seed=0)
    model.train()
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    summary(model)
    assert model.training and model.bn1.training
    assert all("forward" not in m.__dict__ for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # eval mode: running stats untouched


class TwoBranch(nn.Module):
    """Not a Sequential: its forward calls its layers itself."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.unused = nn.ReLU()

    def forward(self, x):
        return self.fc(self.flatten(self.conv(x)))


def test_non_sequential_model_shapes_come_from_its_own_forward():
    rows = summary_rows(TwoBranch(), input_shape=(1, 8, 8), batch_size=2)
    shapes = {r["name"]: r["output_shape"] for r in rows}
    assert shapes == {"conv": (2, 4, 6, 6), "flatten": (2, 144), "fc": (2, 3), "unused": None}
    assert "unused (ReLU)" in summary(TwoBranch(), input_shape=(1, 8, 8))


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="does not go through MnistCNN"):
        summary(MnistCNN(seed=0), input_shape=(3, 28, 28))


def test_a_summary_between_forward_and_backward_changes_no_gradient():
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((3, 10)).astype(np.float32)
    grads = []
    for with_summary in (False, True):
        model = MnistCNN(seed=0)
        model(x)
        if with_summary:
            summary(model, batch_size=5)
        dx = model.backward(g)
        grads.append([dx] + [p.grad for p in model.parameters()])
    for plain, summarised in zip(*grads):
        np.testing.assert_array_equal(summarised, plain)


@pytest.mark.parametrize("input_shape", [28, "1,28,28", (1, 28.5, 28), (1, 0, 28), ()])
def test_input_shape_must_be_a_tuple_of_positive_ints(input_shape):
    with pytest.raises(ValueError, match="summary: input_shape must be a tuple of positive ints, one sample's "
                                         "shape such as \\(1, 28, 28\\), got "):
        summary(MnistCNN(seed=0), input_shape=input_shape)


def test_batch_size_must_be_a_positive_int():
    with pytest.raises(ValueError, match="batch_size must be a positive int or None, got True"):
        summary(MnistCNN(seed=0), batch_size=True)

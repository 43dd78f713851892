"""minicnn.explain against the definitions: saliency, Grad-CAM and one cell of a feature map.

* Saliency is dz_c/dx, the gradient of class c's score (before LogSoftmax) with respect to the
  input: central differences in float64 on a few pixels, and PyTorch's autograd of the same weights.
* Grad-CAM is its definition, with dz_c/dA written out here by hand (fc2, relu3, fc1, pool2 backwards)
  and A the recorded output of relu2; and the same from PyTorch's autograd.
* A cell's products and bias add up to the convolution's output, and every number given (the
  convolution's output, ReLU's, the pooling window and its pooled value) is an array of the model's
  own forward, its modules run as ``model(x)`` runs them, and the pooled value is the one that
  :func:`minicnn.plots.feature_maps` (the page) shows, fused model or not.
"""
from collections import OrderedDict

import numpy as np
import pytest

import minicnn
from minicnn import explain, models, nn
from minicnn.data import load_mnist
from minicnn.imaging import normalize
from minicnn.nn.fusion import fuse
from minicnn.plots import feature_maps

from test_torch_parity import to_torch, torch_model


@pytest.fixture(scope="module")
def digit():
    """A test digit as a float64 input, with a little noise, so that no max-pooling window holds a tie."""
    images, _ = load_mnist("test")
    rng = np.random.default_rng(0)
    return normalize(images[:1])[0].astype(np.float64) + rng.normal(0, 0.01, (1, 28, 28))


@pytest.fixture(scope="module")
def model64():
    return models.MnistCNN(dtype=np.float64, seed=0).eval()


def scores(model, x):
    """z: the outputs of every layer but the final LogSoftmax, run here without minicnn.explain."""
    with minicnn.no_grad():
        return nn.Sequential(*list(model)[:-1])(x[None])[0]


# --- saliency ----------------------------------------------------------------------------------

def test_saliency_is_the_gradient_of_the_score_by_central_differences(model64, digit):
    why = explain.explain_class(model64, digit, target=3)
    assert why.target == 3 and why.gradient.shape == why.saliency.shape == (28, 28)
    np.testing.assert_array_equal(why.saliency, np.abs(why.gradient))
    np.testing.assert_allclose(why.scores, scores(model64, digit), rtol=1e-12)
    largest = np.unravel_index(np.argsort(-why.saliency, axis=None)[:4], (28, 28))
    pixels = list(zip(*largest)) + [(0, 0), (14, 14), (27, 3)]
    eps = 1e-6
    for i, j in pixels:
        up, down = digit.copy(), digit.copy()
        up[0, i, j] += eps
        down[0, i, j] -= eps
        numeric = (scores(model64, up)[3] - scores(model64, down)[3]) / (2 * eps)
        assert why.gradient[i, j] == pytest.approx(numeric, rel=1e-6, abs=1e-9), (i, j)


def test_saliency_and_grad_cam_equal_pytorchs_autograd(torch, model64, digit):
    theirs = to_torch(torch, model64, torch_model(torch, batchnorm=False)).eval()
    x = torch.from_numpy(digit[None].copy()).requires_grad_(True)
    kept = {}
    theirs.relu2.register_forward_hook(lambda module, inputs, output: kept.update(A=output) or output.retain_grad())
    z = theirs[:-1](x)                       # every layer but LogSoftmax: the scores
    z[0, 7].backward()
    why = explain.explain_class(model64, digit, target=7)
    np.testing.assert_allclose(why.gradient, x.grad.numpy()[0, 0], rtol=1e-9, atol=1e-13)
    A, dA = kept["A"].detach().numpy()[0], kept["A"].grad.numpy()[0]
    alpha = dA.mean(axis=(1, 2))
    np.testing.assert_allclose(why.maps, A, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(why.weights, alpha, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(why.cam, np.maximum(np.tensordot(alpha, A, 1), 0), rtol=1e-9, atol=1e-13)


# --- Grad-CAM ------------------------------------------------------------------------------------

def test_grad_cam_is_its_definition_with_the_gradient_written_out_by_hand(model64, digit):
    why = explain.explain_class(model64, digit)
    c = why.target
    assert why.layer == "relu2" and why.maps.shape == (64, 14, 14)
    # The forward from relu2's output A, and dz_c/dA by the chain rule, written out here.
    A = why.maps
    with minicnn.no_grad():
        A_net = nn.Sequential(*list(model64)[:5])(digit[None])[0]
    np.testing.assert_allclose(A, A_net, rtol=0, atol=0)
    windows = A.reshape(64, 7, 2, 7, 2).transpose(0, 1, 3, 2, 4).reshape(64, 7, 7, 4)
    pooled = windows.max(axis=-1)
    h = model64.fc1.weight.data @ pooled.ravel() + model64.fc1.bias.data
    dh = model64.fc2.weight.data[c] * (h > 0)                      # dz_c/d(fc1's output), through relu3
    dpooled = (model64.fc1.weight.data.T @ dh).reshape(64, 7, 7)   # through fc1 and flatten
    winner = windows.argmax(axis=-1)                               # the first maximum of each 2x2 window
    dwindows = (np.arange(4) == winner[..., None]) * dpooled[..., None]
    dA = dwindows.reshape(64, 7, 7, 2, 2).transpose(0, 1, 3, 2, 4).reshape(64, 14, 14)
    alpha = dA.mean(axis=(1, 2))
    cam = np.maximum((alpha[:, None, None] * A).sum(axis=0), 0)
    np.testing.assert_allclose(why.weights, alpha, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(why.cam, cam, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(why.heat, np.kron(why.cam, np.ones((2, 2))))   # each cell covers 2x2 pixels
    np.testing.assert_allclose(why.probabilities, np.exp(scores(model64, digit) - np.log(np.exp(
        scores(model64, digit)).sum())), rtol=1e-12)


def test_each_class_has_its_own_maps_and_the_parameters_keep_their_gradients(model64, digit):
    for p in model64.parameters():
        p.grad = None
    model64.conv1.weight.grad = np.ones_like(model64.conv1.weight.data)
    model64.train()
    maps = {c: explain.grad_cam(model64, digit, c) for c in (1, 7)}
    assert not np.allclose(maps[1], maps[7])
    np.testing.assert_array_equal(model64.conv1.weight.grad, 1)
    assert model64.fc1.weight.grad is None and model64.training
    assert all(layer._cache is None for _, layer in explain.layers_one_by_one(model64))   # nothing kept
    model64.conv1.weight.grad = None
    model64.eval()


def test_between_a_training_steps_forward_and_its_backward_an_explanation_changes_nothing(digit):
    batch, labels = np.stack([digit, digit[:, ::-1]]).astype(np.float32), np.array([7, 1])
    steps = {}
    for asked in (False, True):
        model = models.MnistBNCNN(seed=0)            # BatchNorm and Dropout: what a forward keeps depends on the mode
        loss = nn.NLLLoss()
        loss(model(batch), labels)
        if asked:
            explain.explain_class(model, digit, 3)
            explain.explain_cell(model, digit, "pool2", 5, 3, 3)
        model.backward(loss.backward())
        steps[asked] = model
    assert steps[True].training and all(m.training for m in steps[True].modules())
    for (name, p), q in zip(steps[False].named_parameters(), steps[True].parameters(), strict=True):
        np.testing.assert_array_equal(q.grad, p.grad, err_msg=name)
    for (name, b), (_, c) in zip(steps[False].named_buffers(), steps[True].named_buffers(), strict=True):
        np.testing.assert_array_equal(c, b, err_msg=name)           # BatchNorm's running statistics


@pytest.mark.parametrize("bad", [10, -1, 2.0, True])
def test_a_class_out_of_range_is_named(model64, digit, bad):
    with pytest.raises(ValueError, match=rf"class {bad!r} is out of range: the network has 10 classes, 0-9"):
        explain.explain_class(model64, digit, bad)


def test_inside_no_grad_it_says_what_it_needs(model64, digit):
    with minicnn.no_grad(), pytest.raises(RuntimeError, match="runs the backward pass: call it outside"):
        explain.saliency(model64, digit)


def test_other_models_have_their_grad_cam_layer(digit):
    bn = models.MnistBNCNN(seed=0).eval()
    deep = models.MnistDeepCNN(seed=0).eval()
    assert explain.explain_class(bn, digit.astype(np.float32)).layer == "relu2"
    why = explain.explain_class(deep, digit.astype(np.float32))
    assert why.layer == "relu4" and why.maps.shape == (64, 14, 14) and why.heat.shape == (28, 28)
    assert explain.blocks(deep) == [("pool1", "conv2"), ("pool2", "conv4")]


# --- one cell -------------------------------------------------------------------------------------

def forward_by_name(model, x):
    """Every module's output for ``x``, running the model's modules in order as ``Sequential.forward`` does."""
    outputs = OrderedDict()
    with minicnn.no_grad():
        for name, layer in model.named_children():
            x = layer(x)
            outputs[name] = x[0]
    return outputs


@pytest.mark.parametrize("block, channel, row, col", [("pool1", 0, 7, 7), ("pool1", 31, 0, 13),
                                                      ("pool2", 5, 3, 3), ("pool2", 63, 6, 0)])
def test_a_cell_adds_up_to_the_models_own_forward(block, channel, row, col, digit):
    model = models.MnistCNN(seed=1).eval()
    x = digit.astype(np.float32)
    cell = explain.explain_cell(model, x, block, channel, row, col)
    net = forward_by_name(model, x[None])
    conv_name, relu_name = ("conv1", "relu1") if block == "pool1" else ("conv2", "relu2")
    c = cell.conv
    # the pooled value, and the window it is the largest of, are the network's own
    assert cell.value == net[block][channel, row, col]
    assert cell.value == dict(feature_maps(model, x))[block][channel, row, col]     # what the page shows
    assert [w.layer for w in cell.chain] == [conv_name, relu_name]
    rows, cols = slice(cell.rows[0], cell.rows[-1] + 1), slice(cell.cols[0], cell.cols[-1] + 1)
    assert cell.rows == [2 * row, 2 * row + 1] and cell.cols == [2 * col, 2 * col + 1]
    np.testing.assert_array_equal(cell.chain[0].values, net[conv_name][channel, rows, cols])
    np.testing.assert_array_equal(cell.chain[1].values, net[relu_name][channel, rows, cols])
    i, j = cell.winner
    assert cell.chain[1].values[i, j] == cell.value == cell.chain[1].values.max()
    assert (i, j) == np.unravel_index(np.argmax(cell.chain[1].values), (2, 2))       # the first maximum
    # the convolution at the winner: its input window, its weights, products, sums and bias
    assert (c.layer, c.channel, c.row, c.col) == (conv_name, channel, cell.rows[i], cell.cols[j])
    assert c.output == net[conv_name][channel, c.row, c.col] == cell.chain[0].values[i, j]
    source = x if block == "pool1" else net["pool1"]
    padded = np.pad(source, ((0, 0), (1, 1), (1, 1)))
    np.testing.assert_array_equal(c.inputs, padded[:, c.row:c.row + 3, c.col:c.col + 3])
    np.testing.assert_array_equal(c.padding, np.pad(np.ones(source.shape[1:], bool), 1)[c.row:c.row + 3,
                                                                                         c.col:c.col + 3] == 0)
    np.testing.assert_array_equal(c.weights, getattr(model, conv_name).weight.data[channel])
    np.testing.assert_array_equal(c.products, c.inputs * c.weights)
    np.testing.assert_allclose(c.sums, c.products.sum(axis=(1, 2)), rtol=1e-12)
    assert c.bias == getattr(model, conv_name).bias.data[channel]
    assert c.total == pytest.approx(c.output, rel=1e-5, abs=1e-5)                  # float32 convolution
    assert c.total == pytest.approx(c.sums.sum() + c.bias, rel=1e-12)
    assert sorted(np.abs(c.sums[c.order]), reverse=True) == list(np.abs(c.sums[c.order]))
    assert cell.chain[1].values[i, j] == max(c.output, 0)


def test_a_fused_model_is_explained_by_its_own_layers_and_gives_what_it_computed(digit):
    model = models.MnistCNN(seed=1).eval()
    fused = fuse(model)
    x = digit.astype(np.float32)
    assert [name for name, _ in explain.layers_one_by_one(fused)] == [name for name, _ in model.named_children()]
    page = dict(feature_maps(fused, x))
    for block, channel, row, col in [("pool1", 3, 5, 6), ("pool2", 9, 2, 4)]:
        one_by_one = explain.explain_cell(model, x, block, channel, row, col)
        cell = explain.explain_cell(fused, x, block, channel, row, col)
        assert one_by_one.served is None
        assert cell.served == page[block][channel, row, col]
        assert cell.value == pytest.approx(cell.served, rel=1e-6, abs=1e-6)
        assert cell.value == one_by_one.value and cell.conv.total == one_by_one.conv.total


@pytest.mark.parametrize("block, channel, row, col, message", [
    ("pool3", 0, 0, 0, "no block 'pool3': the blocks are pool1, pool2"),
    (2, 0, 0, 0, "no block 2: the blocks are pool1, pool2"),
    ("pool1", 32, 0, 0, r"channel 32 is out of range: pool1 has 32 feature maps \(channels 0-31\)"),
    ("pool1", 0, 14, 0, r"row 14 is out of range: pool1's maps are 14x14 \(rows 0-13\)"),
    ("pool2", 0, 0, -1, r"column -1 is out of range: pool2's maps are 7x7 \(columns 0-6\)"),
])
def test_a_cell_out_of_range_is_named(block, channel, row, col, message, digit):
    with pytest.raises(ValueError, match=message):
        explain.explain_cell(models.MnistCNN(seed=1), digit.astype(np.float32), block, channel, row, col)


def test_a_block_of_two_convolutions_is_explained_at_its_last(digit):
    deep = models.MnistDeepCNN(seed=0).eval()
    cell = explain.explain_cell(deep, digit.astype(np.float32), "pool1", 4, 6, 6)
    assert cell.conv.layer == "conv2" and cell.conv.inputs.shape == (32, 5, 5)
    assert cell.conv.total == pytest.approx(cell.conv.output, rel=1e-4, abs=1e-5)
    assert explain.explain_cell(deep, digit.astype(np.float32), 0, 4, 6, 6).value == cell.value


def test_source_lines_name_the_reference_of_a_kernel():
    assert explain.source_lines(nn.functional.conv2d).startswith("minicnn/nn/functional.py#L")
    first, last = map(int, explain.source_lines(explain.explain_cell).split("#L")[1].split("-L"))
    lines = open(explain.__file__, encoding="utf-8").read().splitlines()
    assert lines[first - 1].startswith("def explain_cell(") and first < last


# --- the figure of minicnn evaluate --out ---------------------------------------------------------

def test_the_most_confident_mistakes_are_explained_in_a_figure(tmp_path):
    from minicnn.plots import plot_explanations

    images, labels = load_mnist("test")
    images, labels = images[:8], labels[:8]
    model = models.MnistCNN(seed=0).eval()
    predicted = (labels + 1) % 10                        # every one wrong, the third most sure
    probs = np.full(8, 0.5)
    probs[2] = 0.9
    fig = plot_explanations(model, images, labels, predicted, probs, n=3, path=tmp_path / "why.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 12 and (tmp_path / "why.png").stat().st_size > 0
    assert titles[0] == f"read {predicted[2]} (90%), true {labels[2]}"
    assert titles[1] == f"saliency of {predicted[2]}" and titles[3].startswith(f"Grad-CAM of {labels[2]}")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(),
                                  explain.saliency(model, images[2], int(predicted[2])))
    right = plot_explanations(model, images, labels, labels, probs)
    assert right.texts[0].get_text() == "No mistakes to explain\n(all 8 right)"

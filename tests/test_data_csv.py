"""load_mnist_csv: Kaggle's layout read back exactly; every bad line named with its number."""
import gzip
import zipfile

import numpy as np
import pytest

from minicnn.data import DataError, load_mnist, load_mnist_csv

HEADER = ",".join(["label"] + [f"pixel{k}" for k in range(784)])
TEST_HEADER = HEADER.removeprefix("label,")


def write_csv(path, images, labels=None, newline="\n", extra=""):
    rows = [HEADER if labels is not None else TEST_HEADER]
    for k, image in enumerate(images):
        values = ([str(labels[k])] if labels is not None else []) + [str(v) for v in image.ravel()]
        rows.append(",".join(values))
    path.write_text(newline.join(rows) + newline + extra, newline="")
    return path


def test_train_layout_round_trip(tmp_path):
    images, labels = load_mnist("test")
    path = write_csv(tmp_path / "train.csv", images[:5], labels[:5])
    got_images, got_labels = load_mnist_csv(path)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    assert got_labels.dtype == np.int64 and got_labels.shape == (5,)
    np.testing.assert_array_equal(got_images, images[:5])
    np.testing.assert_array_equal(got_labels, labels[:5])


def test_test_layout_has_no_labels(tmp_path):
    images, _ = load_mnist("test")
    got_images, got_labels = load_mnist_csv(write_csv(tmp_path / "test.csv", images[:3]))
    assert got_labels is None
    np.testing.assert_array_equal(got_images, images[:3])


def test_crlf_and_blank_lines_are_fine(tmp_path):
    images = np.full((2, 28, 28), 7, np.uint8)
    path = write_csv(tmp_path / "t.csv", images, [3, 4], newline="\r\n", extra="\r\n")
    got_images, got_labels = load_mnist_csv(path)
    assert got_labels.tolist() == [3, 4] and (got_images == 7).all()


def good_row(label="1", **pixels):
    """A data line of zeros, with ``pixelK="text"`` put in."""
    values = ["0"] * 784
    for name, text in pixels.items():
        values[int(name.removeprefix("pixel"))] = text
    return ",".join([label] + values)


@pytest.mark.parametrize("lines, message", [
    (["label,pixel0,pixel1"], r"line 1: expected the header label,pixel0,\.\.\.,pixel783 \(785 columns\), "
                              r"found 3 columns starting 'label,pixel0,pixel1'"),
    ([HEADER.replace("pixel3,", "pix3,")], r"line 1: expected column 5 of the header to be 'pixel3' "
                                           r"\(header label,pixel0,\.\.\.,pixel783\), found 'pix3'"),
    ([TEST_HEADER.replace("pixel0", "id")], r"line 1: expected column 1 of the header to be 'pixel0' "
                                            r"\(header pixel0,\.\.\.,pixel783\), found 'id'"),
    ([""], r"line 1: expected the header pixel0,\.\.\.,pixel783 \(784 columns\), found 1 columns"),
    ([HEADER, good_row(), good_row()[:-2]], r"line 3: expected 785 comma-separated values "
                                            r"\(one per header column\), found 784"),
    ([HEADER, good_row(), good_row() + ",0"], r"line 3: expected 785 .* found 786"),
    ([HEADER, good_row(), "", good_row(pixel0="1.5")],
     r"line 4: column pixel0 is '1\.5'; expected an integer"),
    ([HEADER, good_row(pixel2="abc")], r"line 2: column pixel2 is 'abc'; expected an integer"),
    ([HEADER, good_row(pixel0="")], r"line 2: column pixel0 is ''; expected an integer"),
    ([HEADER, good_row(), good_row(pixel1="256")],
     r"line 3: column pixel1 is 256; expected a pixel value in 0-255"),
    ([HEADER, good_row(pixel0=" -1")], r"line 2: column pixel0 is -1; expected a pixel value in 0-255"),
    ([HEADER, good_row("10")], r"line 2: column label is 10; expected a label in 0-9"),
    ([HEADER], r"no data rows after the header; expected at least one image"),
])
def test_bad_files_name_the_line_and_the_problem(tmp_path, lines, message):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_mnist_csv(path)
    assert str(info.value).startswith(str(path))


def test_byte_order_mark_is_skipped(tmp_path):
    images = np.full((2, 28, 28), 9, np.uint8)
    path = write_csv(tmp_path / "excel.csv", images, [5, 6], newline="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's "CSV UTF-8" starts so
    got_images, got_labels = load_mnist_csv(path)
    assert got_labels.tolist() == [5, 6] and (got_images == 9).all()


def test_old_mac_line_breaks_still_read(tmp_path):
    path = write_csv(tmp_path / "cr.csv", np.zeros((2, 28, 28), np.uint8), [1, 2], newline="\r")
    assert load_mnist_csv(path)[1].tolist() == [1, 2]


def zipped(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.csv", HEADER + "\n" + good_row() + "\n")
    return path


def gzipped(path):
    path.write_bytes(gzip.compress((HEADER + "\n" + good_row() + "\n").encode()))
    return path


def latin1(path):
    path.write_bytes((HEADER + "\n" + good_row() + "\n" + good_row() + ",caf\xe9\n").encode("latin-1"))
    return path


def utf16(path):
    path.write_text(HEADER + "\n" + good_row() + "\n", encoding="utf-16")
    return path


@pytest.mark.parametrize("make, name, message", [
    (zipped, "train.zip", "expected a plain-text CSV file, found a ZIP archive; unzip it and pass the "
                          ".csv file inside"),
    (gzipped, "train.csv.gz", "expected a plain-text CSV file, found a gzip-compressed file; "
                              "decompress it first (gunzip)"),
    (latin1, "latin1.csv", "expected a plain-text CSV file in UTF-8, found bytes that are not UTF-8 "
                           "(invalid continuation byte); save it as UTF-8 CSV"),
    (utf16, "utf16.csv", "expected a plain-text CSV file in UTF-8, found bytes that are not UTF-8 "
                         "(invalid start byte); save it as UTF-8 CSV"),
])
def test_files_that_are_not_utf8_text_are_named(tmp_path, make, name, message):
    path = make(tmp_path / name)
    with pytest.raises(DataError) as info:
        load_mnist_csv(path)
    assert str(info.value) == f"{path}: {message}"


def test_hash_is_not_a_comment(tmp_path):
    path = tmp_path / "hash.csv"
    path.write_text("\n".join([HEADER, good_row(), good_row()[:-1] + "0#junk"]) + "\n")
    with pytest.raises(DataError) as info:
        load_mnist_csv(path)
    assert str(info.value) == f"{path}, line 3: column pixel783 is '0#junk'; expected an integer"

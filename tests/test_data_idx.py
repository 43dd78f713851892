"""The IDX reader and SHA256SUMS parser: good files read back, every kind of bad file is named."""
import gzip
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minicnn.data import DataError, read_idx, read_sha256sums
from minicnn.data.idx import IDX_TYPES, parse_idx


def idx_bytes(array, type_code=0x08):
    """An IDX file's bytes for ``array`` (the writer the reader is checked against)."""
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[type_code]).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", [(5,), (3, 4, 6), (2, 1, 3, 2)])
def test_uint8_round_trip(tmp_path, rng, gz, shape):
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(array), gz))
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


@pytest.mark.parametrize("code, dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                         (0x0D, np.float32), (0x0E, np.float64)])
def test_other_types_are_big_endian_and_come_back_native(tmp_path, code, dtype):
    array = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(array, code)))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@given(data=st.data(), gz=st.booleans())
def test_any_idx_array_round_trips(tmp_path_factory, data, gz):
    code = data.draw(st.sampled_from(sorted(IDX_TYPES)))
    dtype = IDX_TYPES[code].newbyteorder("=")
    array = data.draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
                                 elements={"allow_nan": False} if dtype.kind == "f" else None))
    path = write(tmp_path_factory.mktemp("idx") / "a", idx_bytes(array, code), gz)
    out = read_idx(path)
    assert out.dtype == dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_compression_is_detected_by_magic_bytes_not_by_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = write(tmp_path / "raw.gz", idx_bytes(array))
    raw_named_gz = write(tmp_path / "compressed", idx_bytes(array), gz=True)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_sha256_is_of_the_decompressed_content(tmp_path):
    data = idx_bytes(np.arange(10, dtype=np.uint8))
    path = write(tmp_path / "a.gz", data, gz=True)
    digest = hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(read_idx(path, sha256=digest.upper()), np.arange(10))
    with pytest.raises(DataError, match=rf"a\.gz: SHA-256 mismatch.*expected {'0' * 64}, found {digest}"):
        read_idx(path, sha256="0" * 64)


GOOD = idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
HUGE = bytes([0, 0, 0x08, 3]) + np.array([2**31, 2**31, 4], dtype=">u4").tobytes()  # and no data


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x08", r"expected an IDX header of at least 4 bytes, found 3"),
    (b"\x12\x34" + GOOD[2:], r"magic number must start with two zero bytes \(00 00\), found 12 34"),
    (GOOD[:2] + b"\x07" + GOOD[3:], r"unknown IDX type code 0x07; expected one of 0x08 \(uint8\)"),
    (b"\x00\x00\x08\x00", r"0 dimensions; expected at least 1"),
    (GOOD[:10], r"truncated header: 3 dimensions need 16 header bytes, found 10"),
    (GOOD[:-1], r"truncated: the header promises shape \(2, 3, 3\) of uint8, i\.e\. 18 data bytes "
                r"after the 16-byte header, found 17"),
    (GOOD + b"\x00", r"too long: .* 18 data bytes .* found 19"),
    (idx_bytes(np.zeros(3, np.int32), 0x0C)[:-2], r"shape \(3,\) of int32, i\.e\. 12 data bytes .* found 10"),
    # Sizes whose product passes 2**63: 2**31 * 2**31 * 4 = 2**64 bytes, not 0 (int64 wraps to 0).
    (HUGE, r"truncated: the header promises shape \(2147483648, 2147483648, 4\) of uint8, i\.e\. "
           r"18446744073709551616 data bytes after the 16-byte header, found 0$"),
    # (2**32 - 1)**2 * 8 bytes, not the negative number int64 wraps to.
    (bytes([0, 0, 0x0E, 2]) + b"\xff" * 8, r"truncated: .* shape \(4294967295, 4294967295\) of float64, "
                                           r"i\.e\. 147573952520956936200 data bytes .* found 0$"),
])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_bad_files_raise_data_error_naming_file_and_expectation(tmp_path, data, message, gz):
    path = write(tmp_path / "bad-file", data, gz)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("cut", [5, 20, -8])
def test_corrupt_or_cut_gzip(tmp_path, cut):
    compressed = gzip.compress(GOOD)
    path = write(tmp_path / "cut.gz", compressed[:cut])
    with pytest.raises(DataError, match=r"cut\.gz: starts like a gzip file \(1f 8b\) but cannot be "
                                        r"decompressed"):
        read_idx(path)


def test_flipped_byte_in_gzip_is_caught(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    compressed[-6] ^= 0xFF  # inside the CRC-32 / length trailer
    with pytest.raises(DataError, match="cannot be decompressed"):
        read_idx(write(tmp_path / "flip.gz", bytes(compressed)))


def test_parse_idx_names_its_source():
    with pytest.raises(DataError, match="^memory: "):
        parse_idx(b"\x01\x00\x08\x01", "memory")


def test_read_sha256sums(tmp_path):
    a, b = "ab" * 32, "CD" * 32
    path = tmp_path / "SHA256SUMS"
    path.write_text(f"# digests\n{a}  train-images-idx3-ubyte\n\n{b} *t10k labels.gz\n")
    assert read_sha256sums(path) == {"train-images-idx3-ubyte": a, "t10k labels.gz": b.lower()}
    path.write_text(f"{a}  ok\nnot-a-digest  file\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 2: expected '<64 hex digits>  <file name>', "
                                        r"found 'not-a-digest  file'"):
        read_sha256sums(path)

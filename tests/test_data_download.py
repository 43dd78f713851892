"""download: mirrors in order, checksums, atomic writes; against a local server on 127.0.0.1 only."""
import functools
import gzip
import hashlib
import os
import http.server
import socket
import threading

import numpy as np
import pytest

from minicnn.data import DownloadError, download, download_mnist, load_mnist
from minicnn.data import mnist as mnist_module


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of a folder; under /truncated/ it promises more bytes than it sends."""

    def do_GET(self):
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a few bytes")
            return
        super().do_GET()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """Base URL of a server for tmp_path/served: /good/ has the files, /empty/ has none, /bad/ wrong ones."""
    root = tmp_path / "served"
    for folder in ("good", "empty", "bad"):
        (root / folder).mkdir(parents=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    """A URL on which nothing listens: what an offline mirror looks like."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


CONTENT = b"the content of a data file\n" * 50
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def serve(root, folder, name, data):
    (root / folder / name).write_bytes(data)


def test_download_from_a_single_url(server, tmp_path):
    root, base = server
    serve(root, "good", "a.bin", CONTENT)
    paths = download(base + "/good", tmp_path / "dest", ["a.bin"], sha256={"a.bin": DIGEST.upper()})
    assert paths == [tmp_path / "dest" / "a.bin"]
    assert paths[0].read_bytes() == CONTENT
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["a.bin"]


def test_downloaded_files_get_the_usual_permissions(server, tmp_path):
    root, base = server
    serve(root, "good", "a.bin", CONTENT)
    old = os.umask(0o027)
    try:
        (path,) = download(base + "/good", tmp_path / "dest", ["a.bin"], sha256={"a.bin": DIGEST})
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == "0o640"  # not the temporary file's 0600


def test_a_failed_checksum_keeps_the_file_that_was_there(server, tmp_path):
    root, base = server
    serve(root, "bad", "a.bin", b"corrupted")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "a.bin").write_bytes(b"an older copy")  # does not match: fetched again
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download(base + "/bad", tmp_path / "dest", ["a.bin"], sha256={"a.bin": DIGEST})
    assert (tmp_path / "dest" / "a.bin").read_bytes() == b"an older copy"
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["a.bin"]


def test_checksum_is_of_the_decompressed_content(server, tmp_path):
    root, base = server
    serve(root, "good", "a.gz", gzip.compress(CONTENT))
    download(base + "/good/", tmp_path / "dest", ["a.gz"], sha256={"a.gz": DIGEST})
    assert gzip.decompress((tmp_path / "dest" / "a.gz").read_bytes()) == CONTENT


def test_mirrors_are_tried_in_order(server, closed_port, tmp_path):
    root, base = server
    serve(root, "good", "a.bin", CONTENT)
    serve(root, "bad", "a.bin", b"corrupted")
    mirrors = [closed_port, base + "/empty/", base + "/bad/", base + "/truncated/", base + "/good/"]
    download(mirrors, tmp_path / "dest", ["a.bin"], sha256={"a.bin": DIGEST})
    assert (tmp_path / "dest" / "a.bin").read_bytes() == CONTENT
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["a.bin"]


def test_checksum_failure_everywhere_leaves_no_file(server, tmp_path):
    root, base = server
    serve(root, "bad", "a.bin", b"corrupted")
    serve(root, "good", "a.bin", CONTENT)
    found = hashlib.sha256(b"corrupted").hexdigest()
    with pytest.raises(DownloadError, match=rf"{base}/bad/a.bin: SHA-256 mismatch of the content: "
                                            rf"expected {'0' * 64}, found {found}"):
        download([base + "/bad", base + "/good"], tmp_path / "dest", ["a.bin"], sha256={"a.bin": "0" * 64})
    assert list((tmp_path / "dest").iterdir()) == []


def test_truncated_transfer_leaves_no_file(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError) as info:
        download(base + "/truncated", tmp_path / "dest", ["a.bin"])
    assert f"{base}/truncated/a.bin: " in str(info.value)
    assert list((tmp_path / "dest").iterdir()) == []


def test_offline_error_names_every_mirror(closed_port, tmp_path):
    other = closed_port + "second-mirror/"
    with pytest.raises(DownloadError) as info:
        download([closed_port, other], tmp_path / "dest", ["a.bin"], timeout=5)
    message = str(info.value)
    assert message.startswith("could not download a.bin from any of 2 mirror(s) "
                              "(no mirror could be reached: are you offline?); tried:")
    assert f"{closed_port}a.bin: " in message and f"{other}a.bin: " in message
    assert "refused" in message.lower()
    assert isinstance(info.value, OSError)
    assert list((tmp_path / "dest").iterdir()) == []


def test_error_lists_what_each_mirror_did(closed_port, server, tmp_path):
    root, base = server
    serve(root, "bad", "a.bin", b"corrupted")
    with pytest.raises(DownloadError) as info:
        download([closed_port, base + "/empty/", base + "/bad/"], tmp_path / "dest", ["a.bin"],
                 sha256={"a.bin": DIGEST})
    lines = str(info.value).split("\n")
    assert "offline" not in lines[0]
    assert lines[1].startswith(f"  {closed_port}a.bin: ")
    assert lines[2] == f"  {base}/empty/a.bin: HTTP Error 404: File not found"
    assert lines[3].startswith(f"  {base}/bad/a.bin: SHA-256 mismatch of the content: expected {DIGEST}")


def test_existing_files_are_kept_when_they_match(closed_port, server, tmp_path):
    root, base = server
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.bin").write_bytes(CONTENT)
    download(closed_port, dest, ["a.bin"], sha256={"a.bin": DIGEST})  # offline, but nothing to fetch
    download(closed_port, dest, ["a.bin"])
    (dest / "a.bin").write_bytes(b"stale")
    serve(root, "good", "a.bin", CONTENT)
    download([closed_port, base + "/good"], dest, ["a.bin"], sha256={"a.bin": DIGEST})
    assert (dest / "a.bin").read_bytes() == CONTENT


@pytest.mark.parametrize("args, message", [
    (([], ["a"]), "needs at least one mirror URL"),
    (("http://127.0.0.1/", ["a"], {"b": "0" * 64}), r"sha256 has digests for \['b'\], which are not among"),
    (("http://127.0.0.1/", ["sub/a"]), r"plain names without folders, got 'sub/a'"),
    (("http://127.0.0.1/", [".."]), r"plain names without folders, got '\.\.'"),
])
def test_download_arguments_are_checked(tmp_path, args, message):
    mirrors, files, *rest = args
    with pytest.raises(ValueError, match=message):
        download(mirrors, tmp_path, files, *rest)


def test_download_mnist_verifies_against_the_bundled_digests(server, tmp_path):
    root, base = server
    for pair in mnist_module.MNIST_FILES.values():
        for name in pair:
            serve(root, "good", f"{name}.gz", (mnist_module.BUNDLED_MNIST_DIR / f"{name}.gz").read_bytes())
    paths = download_mnist(tmp_path / "mnist", mirrors=[base + "/good/"])
    assert [p.name for p in paths] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(load_mnist("test", root=tmp_path / "mnist")[1], load_mnist("test")[1])

    serve(root, "bad", "train-images-idx3-ubyte.gz", gzip.compress(b"not mnist"))
    expected = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    with pytest.raises(DownloadError, match=rf"bad/train-images-idx3-ubyte.gz: SHA-256 mismatch of the "
                                            rf"content: expected {expected}"):
        download_mnist(tmp_path / "elsewhere", mirrors=base + "/bad/")
    assert list((tmp_path / "elsewhere").iterdir()) == []

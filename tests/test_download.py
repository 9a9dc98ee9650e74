"""`rpl fetch` against a real HTTP server on 127.0.0.1 serving archives in the official layouts."""

import hashlib
import http.server
import shutil
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
from conftest import write_siftflow_tree

from rpl.__main__ import main
from rpl.data import DownloadError, SiftFlow, fetch
from rpl.data import download as dl


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with Range support; ``server.cut`` bytes, then drops (once)."""

    def do_GET(self):
        data = self.server.files.get(self.path.lstrip("/"))
        self.server.requests.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.server.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut is not None:
            body, self.server.cut = body[: self.server.cut], None
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.requests, httpd.cut, httpd.ranges = {}, [], None, True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def siftflow_zip(tmp_path):
    """The bytes of a small SiftFlowDataset.zip (layout at the zip's root, as the official one)."""
    write_siftflow_tree(tmp_path / "src")
    shutil.make_archive(str(tmp_path / "SiftFlowDataset"), "zip", tmp_path / "src" / "siftflow")
    return (tmp_path / "SiftFlowDataset.zip").read_bytes()


def siftflow_source(server, data, md5=True, size=True):
    server.files["SiftFlowDataset.zip"] = data
    archive = dl.Archive(
        url=server.url + "SiftFlowDataset.zip",
        filename="SiftFlowDataset.zip",
        size=len(data) if size else None,
        md5=hashlib.md5(data).hexdigest() if md5 else None,
    )
    return dl.Source("siftflow", (archive,), "TestSet1.txt", "http://example.invalid/")


def test_fetch_then_load(server, siftflow_zip, tmp_path):
    root = tmp_path / "data"
    path = fetch("siftflow", root, source=siftflow_source(server, siftflow_zip), progress=False)
    assert path == root / "siftflow"
    assert len(SiftFlow("train", root)) == 2 and len(SiftFlow("test", root)) == 1
    assert sorted(p.name for p in root.iterdir()) == [".downloads", "siftflow"]
    assert not any((root / ".downloads").iterdir())  # archive removed after extraction
    requests = len(server.requests)
    fetch("siftflow", root, source=siftflow_source(server, siftflow_zip), progress=False)
    assert len(server.requests) == requests  # already there: nothing downloaded


def test_interrupted_download_resumes_with_range(server, siftflow_zip, tmp_path):
    root = tmp_path / "data"
    source = siftflow_source(server, siftflow_zip)
    server.cut = len(siftflow_zip) // 3
    with pytest.raises(DownloadError, match="interrupted after .* run the same command again"):
        fetch("siftflow", root, source=source, progress=False)
    part = root / ".downloads" / "SiftFlowDataset.zip.part"
    assert part.stat().st_size == len(siftflow_zip) // 3
    assert not (root / "siftflow").exists()
    fetch("siftflow", root, source=source, progress=False)
    assert server.requests[-1][1] == f"bytes={len(siftflow_zip) // 3}-"
    assert len(SiftFlow("test", root)) == 1


def test_server_without_range_support_restarts(server, siftflow_zip, tmp_path):
    root = tmp_path / "data"
    (root / ".downloads").mkdir(parents=True)
    (root / ".downloads" / "SiftFlowDataset.zip.part").write_bytes(siftflow_zip[:100])
    server.ranges = False
    fetch("siftflow", root, source=siftflow_source(server, siftflow_zip), progress=False)
    assert len(SiftFlow("train", root)) == 2


def test_complete_part_file_is_accepted_on_416(server, siftflow_zip, tmp_path):
    root = tmp_path / "data"
    (root / ".downloads").mkdir(parents=True)
    (root / ".downloads" / "SiftFlowDataset.zip.part").write_bytes(siftflow_zip)
    fetch("siftflow", root, source=siftflow_source(server, siftflow_zip), progress=False)
    assert len(SiftFlow("train", root)) == 2


def test_checksum_mismatch_removes_file(server, siftflow_zip, tmp_path):
    root = tmp_path / "data"
    source = siftflow_source(server, siftflow_zip)
    server.files["SiftFlowDataset.zip"] = siftflow_zip[:-1] + bytes([siftflow_zip[-1] ^ 1])
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch("siftflow", root, source=source, progress=False)
    assert not any((root / ".downloads").iterdir())
    assert not (root / "siftflow").exists()


def test_size_mismatch(server, siftflow_zip, tmp_path):
    source = siftflow_source(server, siftflow_zip, md5=False)
    server.files["SiftFlowDataset.zip"] = siftflow_zip[:-10]
    with pytest.raises(DownloadError, match=rf"got {len(siftflow_zip) - 10} bytes, expected {len(siftflow_zip)}"):
        fetch("siftflow", tmp_path, source=source, progress=False)


def test_corrupt_archive_without_checksum(server, tmp_path):
    source = siftflow_source(server, b"this is not an archive", md5=False, size=False)
    with pytest.raises(DownloadError, match="neither a zip nor a tar .* by hand"):
        fetch("siftflow", tmp_path, source=source, progress=False)
    assert not (tmp_path / "siftflow").exists() and not (tmp_path / ".siftflow.partial").exists()


def test_archive_without_expected_layout(server, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("wrong archive")
    shutil.make_archive(str(tmp_path / "wrong"), "zip", tmp_path / "src")
    source = siftflow_source(server, (tmp_path / "wrong.zip").read_bytes())
    with pytest.raises(DownloadError, match="do not contain TestSet1.txt"):
        fetch("siftflow", tmp_path / "data", source=source, progress=False)


def test_incomplete_existing_folder_is_not_overwritten(server, siftflow_zip, tmp_path):
    (tmp_path / "siftflow").mkdir()
    (tmp_path / "siftflow" / "something").write_text("x")
    with pytest.raises(DownloadError, match="incomplete copy"):
        fetch("siftflow", tmp_path, source=siftflow_source(server, siftflow_zip), progress=False)


def test_pascal_context_two_archives_merge(server, tmp_path):
    """The VOC2010 tar and the PASCAL Context labels tar end up in one folder."""
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2010" / "JPEGImages"
    voc.mkdir(parents=True)
    (voc / "x.jpg").write_bytes(b"jpeg")
    ctx = tmp_path / "ctx"
    (ctx / "trainval").mkdir(parents=True)
    (ctx / "labels.txt").write_text("1: accordion\n")
    for name, folder in (("voc.tar", tmp_path / "voc"), ("ctx.tar.gz", ctx)):
        with tarfile.open(tmp_path / name, "w:gz" if name.endswith("gz") else "w") as t:
            for child in folder.iterdir():
                t.add(child, arcname=child.name)
        server.files[name] = (tmp_path / name).read_bytes()
    source = dl.Source(
        "pascal-context",
        tuple(dl.Archive(server.url + n, n) for n in ("voc.tar", "ctx.tar.gz")),
        "labels.txt",
        "http://example.invalid/",
    )
    path = fetch("pascal-context", tmp_path / "data", source=source, progress=False)
    assert (path / "VOCdevkit/VOC2010/JPEGImages/x.jpg").is_file()
    assert (path / "trainval").is_dir() and (path / "labels.txt").is_file()


def test_unreachable_server_fails_fast_with_instructions(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = dl.Source(
        "siftflow",
        (dl.Archive(f"http://127.0.0.1:{port}/SiftFlowDataset.zip", "SiftFlowDataset.zip"),),
        "TestSet1.txt",
        "http://example.invalid/",
    )
    start = time.monotonic()
    with pytest.raises(DownloadError) as e:
        fetch("siftflow", tmp_path, source=source, progress=False)
    assert time.monotonic() - start < 5
    assert "by hand" in str(e.value) and str(tmp_path / "siftflow" / "TestSet1.txt") in str(e.value)


def test_cli_fetch(server, siftflow_zip, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(dl.SOURCES, "siftflow", siftflow_source(server, siftflow_zip))
    assert main(["fetch", "siftflow", "--root", str(tmp_path)]) == 0
    assert "siftflow is ready in" in capsys.readouterr().out
    server.files.clear()
    shutil.rmtree(tmp_path / "siftflow")
    assert main(["fetch", "siftflow", "--root", str(tmp_path)]) == 1
    assert "rpl fetch: could not download" in capsys.readouterr().err


def test_registry_is_complete():
    for name, source in dl.SOURCES.items():
        assert source.name == name and source.archives
        for archive in source.archives:
            assert archive.url.endswith(archive.filename)
        assert np.all([a.md5 is None or len(a.md5) == 32 for a in source.archives])

"""The downloader: cache reuse, SHA-256 checks, atomic writes, the offline message."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import platformdirs
import pytest

from vsml_bench.datasets.checks import DataFileError
from vsml_bench.datasets.download import RemoteFile, data_root, fetch, select_files

PAYLOAD = bytes(range(256)) * 64 + b"tail"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local_file(tmp_path, name: str, data: bytes, **overrides) -> RemoteFile:
    source = tmp_path / "publisher" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    fields = dict(url=source.as_uri(), filename=name, sha256=sha(data), size=len(data))
    fields.update(overrides)
    return RemoteFile(**fields)


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes[path] = (data, complete)`; stops halfway if incomplete."""

    def do_GET(self):
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        data, complete = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if complete else data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url_of(httpd, path: str) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def test_fetch_copies_a_file_url_into_the_dataset_folder(tmp_path):
    remote = local_file(tmp_path, "a.bin", PAYLOAD)
    paths = fetch("toy", [remote], root=tmp_path / "data")
    assert paths == {"a.bin": tmp_path / "data" / "toy" / "a.bin"}
    assert paths["a.bin"].read_bytes() == PAYLOAD
    assert files_in(tmp_path / "data" / "toy") == ["a.bin"]


def test_fetch_downloads_over_http(tmp_path, server):
    server.routes["/files/b.bin"] = (PAYLOAD, True)
    remote = RemoteFile(url_of(server, "/files/b.bin"), "b.bin", sha(PAYLOAD))
    paths = fetch("toy", [remote], root=tmp_path)
    assert paths["b.bin"].read_bytes() == PAYLOAD


def test_cached_file_with_matching_sha256_is_used_without_download(tmp_path):
    cached = tmp_path / "toy" / "a.bin"
    cached.parent.mkdir()
    cached.write_bytes(PAYLOAD)
    unreachable = RemoteFile(
        (tmp_path / "nowhere" / "a.bin").as_uri(), "a.bin", sha(PAYLOAD), len(PAYLOAD)
    )
    assert fetch("toy", [unreachable], root=tmp_path) == {"a.bin": cached}
    assert cached.read_bytes() == PAYLOAD


def test_cached_file_with_wrong_sha256_is_downloaded_again(tmp_path):
    remote = local_file(tmp_path, "a.bin", PAYLOAD)
    cached = tmp_path / "data" / "toy" / "a.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:-1] + b"X")
    fetch("toy", [remote], root=tmp_path / "data")
    assert cached.read_bytes() == PAYLOAD


def test_download_with_wrong_sha256_is_rejected_and_leaves_no_file(tmp_path):
    remote = local_file(tmp_path, "a.bin", PAYLOAD, sha256="0" * 64, size=None)
    with pytest.raises(DataFileError, match="SHA-256") as info:
        fetch("toy", [remote], root=tmp_path / "data")
    assert sha(PAYLOAD) in str(info.value)
    assert files_in(tmp_path / "data" / "toy") == []


def test_download_of_wrong_size_is_rejected_and_leaves_no_file(tmp_path):
    remote = local_file(tmp_path, "a.bin", PAYLOAD, size=len(PAYLOAD) + 1)
    with pytest.raises(DataFileError, match="bytes"):
        fetch("toy", [remote], root=tmp_path / "data")
    assert files_in(tmp_path / "data" / "toy") == []


@pytest.mark.parametrize("size", [None, len(PAYLOAD)])
def test_download_that_breaks_off_halfway_leaves_no_file(tmp_path, server, size):
    server.routes["/half.bin"] = (PAYLOAD, False)
    remote = RemoteFile(url_of(server, "/half.bin"), "half.bin", sha(PAYLOAD), size)
    with pytest.raises(DataFileError, match="half.bin"):
        fetch("toy", [remote], root=tmp_path)
    assert files_in(tmp_path / "toy") == []


def test_a_failed_download_keeps_the_files_already_fetched(tmp_path, server):
    good = local_file(tmp_path, "good.bin", PAYLOAD)
    server.routes["/bad.bin"] = (PAYLOAD, False)
    bad = RemoteFile(url_of(server, "/bad.bin"), "bad.bin", sha(PAYLOAD))
    with pytest.raises(DataFileError):
        fetch("toy", [good, bad], root=tmp_path / "data")
    assert files_in(tmp_path / "data" / "toy") == ["good.bin"]


def test_offline_error_names_every_missing_file_with_url_sha256_and_path(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = RemoteFile(f"http://127.0.0.1:{closed_port}/x.gz", "x.gz", "a" * 64, 10)
    absent = RemoteFile((tmp_path / "gone.zip").as_uri(), "gone.zip", "b" * 64)
    present = local_file(tmp_path, "ok.bin", PAYLOAD)

    with pytest.raises(DataFileError) as info:
        fetch("toy", [refused, present, absent], root=tmp_path / "data")

    message = str(info.value)
    for remote in (refused, absent):
        assert remote.url in message
        assert remote.sha256 in message
        assert str(tmp_path / "data" / "toy" / remote.filename) in message
    assert "ok.bin" not in message
    assert "2 file(s)" in message


def test_data_root_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("VSML_BENCH_DATA", str(tmp_path / "custom"))
    assert data_root() == tmp_path / "custom"
    remote = local_file(tmp_path, "a.bin", PAYLOAD)
    assert fetch("toy", [remote])["a.bin"] == tmp_path / "custom" / "toy" / "a.bin"
    assert (tmp_path / "custom" / "toy" / "a.bin").read_bytes() == PAYLOAD


def test_data_root_defaults_to_the_user_cache_folder(monkeypatch):
    monkeypatch.delenv("VSML_BENCH_DATA", raising=False)
    assert str(data_root()) == platformdirs.user_cache_dir("vsml-bench")


def test_select_files_picks_by_name_and_reports_unknown_names():
    a, b = RemoteFile("u:a", "a", "0" * 64), RemoteFile("u:b", "b", "1" * 64)
    assert select_files([a, b], ["b", "a"]) == [b, a]
    with pytest.raises(DataFileError, match="c"):
        select_files([a, b], ["c"])

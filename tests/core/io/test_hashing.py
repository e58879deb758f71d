"""core.io.hashing.file_sha256 on known answers, including a file longer than one read block."""

import hashlib

from core.io.hashing import file_sha256


def test_known_digest(tmp_path):
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(str(path)) == file_sha256(path)


def test_streamed_digest_equals_whole_file_digest(tmp_path):
    data = bytes(range(256)) * ((3 << 20) // 256 + 7)  # a bit over 3 MiB: several blocks plus a partial one
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_empty_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()

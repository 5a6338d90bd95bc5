"""atomic.write_atomic: threads of one process writing the same file never trip over each
other's temp file (a pid-only temp name did: FileNotFoundError on os.replace)."""

import os
import threading

from imagebuilder.atomic import temp_path, write_atomic


def test_threads_writing_one_file(tmp_path):
    dest = tmp_path / "no-shards.json"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        start.wait()
        try:
            for _ in range(200):
                write_atomic(dest, f"writer {i}".encode())
        except BaseException as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert dest.read_bytes().startswith(b"writer ")
    assert sorted(os.listdir(tmp_path)) == ["no-shards.json"]  # no temp file left


def test_temp_name_ends_with_the_pid(tmp_path):
    # oci/layout.sweep_dead_temps reads the writer's pid from the last dotted part
    name = temp_path(tmp_path / "index.json").name
    assert name.startswith(".index.json.") and name.endswith(f".{os.getpid()}.tmp")
    assert temp_path(tmp_path / "x") != temp_path(tmp_path / "y")

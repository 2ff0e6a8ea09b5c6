import os
import stat

import pytest

from pti_lab.atomic import atomic_path, write_text


def test_write_is_all_or_nothing(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert os.listdir(tmp_path) == ["out.txt"]  # the temp file is gone


def test_files_get_umask_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600

"""Key files are read with care: only small regular files, never blocking, with errors that say what to do."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sfox_exporter.config import (
    MAX_KEY_FILE_BYTES,
    ConfigError,
    KeyLoadError,
    KeySource,
    Overrides,
    Secret,
    load_config,
)
from sfox_exporter.errors import SfoxExporterError

KEY = "key-files-test-0123456789abcdef"


def load_within(source: KeySource, seconds: float = 10.0) -> Secret | BaseException:
    """source.load() on a thread, so that a read that blocks fails the test instead of hanging it."""
    outcome: list[Secret | BaseException] = []

    def run() -> None:
        try:
            outcome.append(source.load())
        except BaseException as error:  # handed to the test to assert on
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"loading {source.origin} blocked for {seconds}s"
    return outcome[0]


def key_error(source: KeySource) -> str:
    outcome = load_within(source)
    assert isinstance(outcome, KeyLoadError), outcome
    assert "\n" not in str(outcome)
    return str(outcome)


def test_key_load_errors_are_not_config_errors() -> None:
    assert issubclass(KeyLoadError, SfoxExporterError) and issubclass(ConfigError, SfoxExporterError)
    assert not issubclass(KeyLoadError, ConfigError)  # a feed thread retries; only start-up refuses


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "key"
    os.mkfifo(fifo)  # nobody writes: an ordinary open() would wait forever
    assert key_error(KeySource(file=fifo)) == f"key file {fifo} is a FIFO, not a regular file"


def test_a_fifo_at_start_up_exits_with_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    config = tmp_path / "config.yaml"
    config.write_text(f"accounts: [{{name: a, api_key_file: {fifo}}}]\n")
    with pytest.raises(ConfigError, match=r"^accounts\[0\]: key file .* is a FIFO, not a regular file$"):
        load_config(Overrides(config_file=str(config)), {})


@pytest.mark.parametrize(("target", "kind"), [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_a_symlink_to_a_device_is_refused(tmp_path: Path, target: str, kind: str) -> None:
    link = tmp_path / "key"
    link.symlink_to(target)
    assert key_error(KeySource(file=link)) == f"key file {link} is {kind}, not a regular file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert key_error(KeySource(file=tmp_path)) == f"key file {tmp_path} is a directory, not a regular file"


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    # Kubernetes mounts Secrets as key -> ..data/key -> ..2024_01_01/key.
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "key").write_text(KEY + "\n")
    (tmp_path / "key").symlink_to(tmp_path / "..data" / "key")
    assert load_within(KeySource(file=tmp_path / "key")) == Secret(KEY)


def test_a_key_at_the_size_cap_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    at_cap = tmp_path / "at-cap"
    at_cap.write_text("k" * MAX_KEY_FILE_BYTES)
    assert load_within(KeySource(file=at_cap)) == Secret("k" * MAX_KEY_FILE_BYTES)
    over = tmp_path / "over"
    over.write_text("k" * (MAX_KEY_FILE_BYTES + 1))
    assert key_error(KeySource(file=over)) == f"key file {over} is larger than 4096 bytes, which no API key is"


def test_a_huge_file_is_refused_after_reading_only_past_the_cap(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    with huge.open("wb") as handle:
        handle.truncate(1 << 40)  # sparse: a terabyte to read, were the cap not enforced by the read itself
    assert "is larger than 4096 bytes" in key_error(KeySource(file=huge))


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "key"
    binary.write_bytes(b"\xff\xfe" + KEY.encode())
    assert key_error(KeySource(file=binary)) == f"key file {binary} cannot be read: not UTF-8 text"


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "key"
    empty.write_text("\n")
    assert key_error(KeySource(file=empty)) == f"key file {empty} is empty"


def _as_uid(uid: int, attempt: Callable[[], object]) -> str:
    """The message of the KeyLoadError or ConfigError `attempt` raises in a child process running as `uid`."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to uid, try, report, and leave without running pytest's teardown
        status = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                attempt()
                message = "no error"
            except (KeyLoadError, ConfigError) as error:
                message = str(error)
            os.write(write_end, message.encode())
        except BaseException:  # the parent sees an empty reply
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reply = reader.read().decode()
    os.waitpid(pid, 0)
    return reply


def _denied(tmp_path: Path, attempt: Callable[[Path], object]) -> tuple[int, str]:
    """(uid, message) of `attempt` on a key file the process may not read."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    if os.geteuid() == 0:  # root reads anything: try as the distroless image's nonroot user instead
        return 65532, _as_uid(65532, lambda: attempt(key_file))
    key_file.chmod(0)
    try:
        attempt(key_file)
    except (KeyLoadError, ConfigError) as error:
        return os.geteuid(), str(error)
    return os.geteuid(), "no error"


def test_permission_denied_names_the_uid_and_the_fix(tmp_path: Path) -> None:
    uid, message = _denied(tmp_path, lambda path: KeySource(file=path).load())
    assert message == (f"cannot read key file {tmp_path / 'key'}: permission denied for uid {uid}; "
                       f"make it readable by that uid (chown {uid} or mount with fsGroup)")


def test_permission_denied_at_start_up_is_one_config_line(tmp_path: Path) -> None:
    uid, message = _denied(tmp_path, lambda path: load_config(Overrides(), {"SFOX_API_KEY_FILE": str(path)}))
    assert message.startswith(f"SFOX_API_KEY_FILE: cannot read key file {tmp_path / 'key'}: "
                              f"permission denied for uid {uid};")


def _key_file(tmp_path: Path, mode: int) -> tuple[KeySource, int]:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(mode)
    return KeySource(file=key_file), key_file.stat().st_gid


def test_group_access_for_the_process_own_group_is_no_warning(tmp_path: Path) -> None:
    source, gid = _key_file(tmp_path, 0o640)  # what Kubernetes' fsGroup mounts look like
    assert source.permission_warning(groups={gid}) is None
    assert source.permission_warning() is None  # the file's group is this process's own


def test_group_access_for_a_foreign_group_warns(tmp_path: Path) -> None:
    source, gid = _key_file(tmp_path, 0o640)
    warning = source.permission_warning(groups={gid + 1})
    assert warning is not None and f"accessible by group {gid} (mode -rw-r-----)" in warning
    assert "chmod 600 or 400" in warning


def test_access_by_others_warns_whatever_the_group(tmp_path: Path) -> None:
    source, gid = _key_file(tmp_path, 0o604)
    warning = source.permission_warning(groups={gid})
    assert warning is not None and "accessible by others" in warning


def test_owner_only_is_no_warning(tmp_path: Path) -> None:
    source, gid = _key_file(tmp_path, 0o400)
    assert source.permission_warning(groups={gid + 1}) is None
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o400

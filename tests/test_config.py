"""`binbot run` settings: strict TOML, flags on top, errors that name the key."""

import pytest

from binbot.device.config import RunConfig, load_config
from binbot.errors import BinbotError


def write(tmp_path, text):
    path = tmp_path / "binbot.toml"
    path.write_text(text)
    return path


def test_the_file_sets_values_and_flags_override_them(tmp_path):
    path = write(tmp_path, 'bundle = "/var/lib/binbot/bundles/current"\nwindow = 7\nthreshold = 1\nhttp = "127.0.0.1:0"\n')

    config = load_config(path, {"window": 3, "source": None})

    assert config.bundle == "/var/lib/binbot/bundles/current"
    assert config.window == 3 and config.threshold == 1.0 and config.http_address == ("127.0.0.1", 0)
    assert config.threads == RunConfig().threads


@pytest.mark.parametrize("text, message", [
    ('bundle = "b"\nwindw = 3\n', "unknown key 'windw'"),
    ('bundle = "b"\nthreads = "4"\n', "threads should be a int, not '4'"),
    ('bundle = "b"\nthreshold = 1.5\n', "threshold = 1.5: must be between 0 and 1"),
    ('bundle = "b"\nwindow = 0\n', "window = 0: must be at least 1"),
    ('bundle = "b"\nhttp = "8080"\n', "should be HOST:PORT"),
    ('bundle = "b"\nloop = 1\n', "loop should be a bool"),
    ('bundle = b\n', "not valid TOML"),
])
def test_bad_keys_and_values_are_refused_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(BinbotError, match=message) as error:
        load_config(path, {})
    assert str(path) in str(error.value)


def test_a_bad_flag_is_refused_as_such():
    with pytest.raises(BinbotError, match="command line: threads = 0: must be at least 1"):
        load_config(None, {"bundle": "b", "threads": 0})


def test_a_bundle_is_required():
    with pytest.raises(BinbotError, match="no bundle"):
        load_config(None, {})

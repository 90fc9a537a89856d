"""The PEP 517 build backend named in pyproject.toml: maturin's, plus one rule.

pip builds a local project in place, so cargo would write its `target/`
directory (hundreds of MB) into the app directory, which Toolforge's build
service exports into the image as it is. Unless CARGO_TARGET_DIR is already
set (project.toml asks the build service to set it, but whether the service
honours that is not documented), every build gets a fresh target directory
under the system temporary directory, removed once the wheel is copied out.
"""

import os
import shutil
import tempfile

import maturin
from maturin import (  # noqa: F401  (re-exported hooks that need no wrapping)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)


def _outside_app_dir(hook, *args, **kwargs):
    if os.environ.get("CARGO_TARGET_DIR"):
        return hook(*args, **kwargs)
    target = tempfile.mkdtemp(prefix="hello-oauth-target-")
    os.environ["CARGO_TARGET_DIR"] = target
    try:
        return hook(*args, **kwargs)
    finally:
        del os.environ["CARGO_TARGET_DIR"]
        shutil.rmtree(target, ignore_errors=True)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _outside_app_dir(maturin.build_wheel, wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _outside_app_dir(maturin.build_editable, wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _outside_app_dir(maturin.build_sdist, sdist_directory, config_settings)

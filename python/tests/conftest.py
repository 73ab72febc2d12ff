"""Shared fixtures: the `pixel` command line (for comparisons) and the model fixture.

PIXEL_BIN names the CLI binary (default: ../target/release/pixel beside this package) and
PIXEL_FIXTURES the parity fixture directory (default: ../../shared/fixtures/pixel-tiny). Tests
that need one skip when it is absent, unless PIXEL_REQUIRE_ALL=1 (CI), where that fails.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _required(what: str, path: Path):
    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get("PIXEL_REQUIRE_ALL") == "1":
            pytest.fail(message + " (PIXEL_REQUIRE_ALL=1)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def pixel_bin() -> Path:
    default = REPO / "target" / "release" / "pixel"
    return _required("pixel CLI (PIXEL_BIN)", Path(os.environ.get("PIXEL_BIN", default)))


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    default = REPO.parent / "shared" / "fixtures" / "pixel-tiny"
    path = Path(os.environ.get("PIXEL_FIXTURES", default))
    return _required("model fixture (PIXEL_FIXTURES)", path / "config.json").parent

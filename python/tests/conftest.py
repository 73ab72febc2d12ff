"""Shared fixtures: the `pixel` command line (for comparisons) and the model fixture.

PIXEL_BIN names the CLI binary (default: ../target/release/pixel beside this package) and
PIXEL_FIXTURES the parity fixture directory (default: ../../shared/fixtures/pixel-tiny). A
test that needs one skips when the default path is absent, and fails when the path was given
in the environment (as .ci/run does) but is absent.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _located(variable: str, default: Path, inside: str = "") -> Path:
    given = os.environ.get(variable)
    path = Path(given) if given else default
    if not (path / inside).exists():
        message = f"{variable}: {path / inside} not found"
        if given:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def pixel_bin() -> Path:
    return _located("PIXEL_BIN", REPO / "target" / "release" / "pixel")


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    default = REPO.parent / "shared" / "fixtures" / "pixel-tiny"
    return _located("PIXEL_FIXTURES", default, "config.json")

"""Fixtures of the catalogue tests: a simulated PS1 sky and the local VizieR server."""

from __future__ import annotations

import pytest

from pipeline.simulate import simulate_sky
from tests.fixture_servers.vizier import vizier_server  # noqa: F401  (pytest fixture)

SKY_RA, SKY_DEC = 150.0, 20.0  # centre of the simulated field (SkyConfig defaults)


@pytest.fixture(scope="session")
def ps1_sky():
    """A simulated 1024² field: ~2000 catalogue stars in the VizieR II/349/ps1 layout."""
    return simulate_sky(size=1024, seed=7, ra_center=SKY_RA, dec_center=SKY_DEC)


@pytest.fixture(scope="session")
def ps1_table(ps1_sky):
    return ps1_sky.catalog

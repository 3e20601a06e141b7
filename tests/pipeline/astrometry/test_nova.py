"""The nova.astrometry.net client against a local server speaking the same JSON API."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.astrometry import (
    AstrometryConfig,
    BlindHints,
    NovaClient,
    NovaSettings,
    SolverCancelled,
    SolverFailed,
    SolverTimeout,
    SolverUnavailable,
    fit_tan_sip,
    solve_astrometry,
    solve_with_nova,
    wcs_grid_difference,
)
from pipeline.astrometry.sources import Detections, select_detections
from pipeline.astrometry.wcsfile import wcs_from_header
from tests.fixture_servers.nova import RECORDED_SOURCES, RECORDED_WCS, NovaService, nova_server

KEY = "test-api-key"
RECORDED_SHAPE = (4096, 4109)  # IMAGEH, IMAGEW of the recorded upload


@pytest.fixture
def nova():
    with nova_server(NovaService(api_keys=(KEY,))) as server:
        yield server


def _settings(server, **changes) -> NovaSettings:
    values = dict(
        api_key=KEY, base_url=server.url, timeout_s=2.0, poll_interval_s=0.01, max_wait_s=10.0
    )
    values.update(changes)
    return NovaSettings(**values)


def _recorded_detections() -> Detections:
    table = Table.read(RECORDED_SOURCES)
    # the recorded list is in FITS pixels (1-based); our detections are 0-based
    x, y = np.asarray(table["X"], float) - 1.0, np.asarray(table["Y"], float) - 1.0
    return Detections(x, y, np.asarray(table["FLUX"], float), np.arange(len(table)))


def test_recorded_source_list_gets_the_recorded_solution(nova):
    hints = BlindHints(ra=87.5, dec=46.8, radius_deg=2.0, scale_low=0.5, scale_high=0.7)
    wcs, details = solve_with_nova(_recorded_detections(), RECORDED_SHAPE, _settings(nova), hints)
    recorded = wcs_from_header(fits.getheader(RECORDED_WCS))
    assert wcs.wcs.crval == pytest.approx(recorded.wcs.crval, abs=1e-10)
    assert wcs.sip is not None and wcs.sip.a_order == 2
    assert tuple(wcs.pixel_shape) == (4109, 4096)
    assert wcs_grid_difference(wcs, recorded, RECORDED_SHAPE)[1] < 1e-6
    assert details["nova_job"] > 0 and details["nova_submission"] == 1
    # what was uploaded: the positions back in FITS pixels, hints, private, image size
    upload = nova.service.uploads[0]
    table = Table.read(RECORDED_SOURCES)
    assert np.allclose(upload["x"][:1000], table["X"][:1000], atol=1e-3)
    assert upload["image_width"] == 4109 and upload["image_height"] == 4096
    assert upload["center_ra"] == 87.5 and upload["radius"] == 2.0
    assert upload["scale_units"] == "arcsecperpix" and upload["scale_upper"] == 0.7
    assert upload["publicly_visible"] == "n" and upload["tweak_order"] == 2
    # the client polled through the queued and solving states
    assert nova.service.submissions[1].polls >= 2 and nova.service.submissions[1].job_polls >= 2
    requests = [r.path for r in nova.requests]
    assert requests[:2] == ["/api/login", "/api/upload"] and requests[-1] == "/wcs_file/1001"


def test_every_request_carries_request_json(nova):
    solve_with_nova(_recorded_detections(), RECORDED_SHAPE, _settings(nova))
    posted = [r for r in nova.requests if r.method == "POST"]
    for request in posted:
        assert "request-json=" in request.text
    login = json.loads(parse_qs(posted[0].text)["request-json"][0])
    assert login == {"apikey": KEY}


def test_fits_source_list_upload(nova, tmp_path):
    with NovaClient(_settings(nova)) as client:
        client.login()
        subid = client.upload_file(RECORDED_SOURCES, RECORDED_SHAPE)
        job = client.wait_for_job(subid)
        header = client.fetch_wcs(job)
    assert header["CRVAL1"] == pytest.approx(87.4807170033)


def test_unsolvable_field_fails_clearly(nova):
    rng = np.random.default_rng(2)
    random = Detections(
        rng.uniform(0, 999, 50), rng.uniform(0, 999, 50), np.ones(50), np.arange(50)
    )
    with pytest.raises(SolverFailed, match="could not solve the field"):
        solve_with_nova(random, (1000, 1000), _settings(nova))


def test_bad_and_missing_keys(nova):
    with pytest.raises(SolverUnavailable, match="rejected the API key"):
        solve_with_nova(_recorded_detections(), RECORDED_SHAPE, _settings(nova, api_key="nope"))
    with pytest.raises(SolverUnavailable, match=r"no nova\.astrometry\.net API key"):
        solve_with_nova(_recorded_detections(), RECORDED_SHAPE, _settings(nova, api_key=""))


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("down", "cannot reach"),
        ("error", "HTTP 500"),
        ("slow", "did not answer within"),
    ],
)
def test_service_failures_are_retryable(mode, message):
    with nova_server(NovaService(api_keys=(KEY,)), slow_seconds=3.0) as server:
        server.mode = mode
        with pytest.raises(SolverTimeout, match=message):
            solve_with_nova(
                _recorded_detections(), RECORDED_SHAPE, _settings(server, timeout_s=0.5)
            )


def test_giving_up_after_max_wait():
    service = NovaService(api_keys=(KEY,), polls_while_solving=10_000)
    with nova_server(service) as server, pytest.raises(SolverTimeout, match="no result within"):
        solve_with_nova(_recorded_detections(), RECORDED_SHAPE, _settings(server, max_wait_s=0.3))


def test_simulated_field_solved_through_nova_then_refined(field):
    """The blind step through nova (order-2 answer), then the built-in refinement."""
    detections = select_detections(field.objects)
    # the service's answer for this upload: an order-2 TAN-SIP of the field, as nova returns
    stars = field.sky.truth.stars[field.sky.truth.stars["in_image"]]
    answer = fit_tan_sip(
        stars["x"], stars["y"], stars["ra"], stars["dec"], sip_order=2, shape=field.shape
    )
    assert wcs_grid_difference(answer, field.truth, field.shape)[0] > 0.15  # not good enough
    service = NovaService(api_keys=(KEY,), polls_before_job=0, polls_while_solving=0)
    service.add_answer(detections.x + 1.0, detections.y + 1.0, answer.to_header(relax=True))
    config = AstrometryConfig(
        blind_solver="nova", nova_api_key=KEY, nova_poll_s=0.01, nova_timeout_s=5.0
    )
    with nova_server(service) as server:
        config.nova_url = server.url
        solution = solve_astrometry(
            field.objects, field.sky.catalog, field.sky.variant("no_wcs"), field.shape, config
        )
    assert solution.method == "nova + builtin"
    assert wcs_grid_difference(solution.wcs, field.truth, field.shape)[0] <= 0.1
    assert solution.details["nova_job"] == 1001


def test_cancellation_while_waiting():
    service = NovaService(api_keys=(KEY,), polls_while_solving=10_000)
    with nova_server(service) as server, pytest.raises(SolverCancelled, match="cancelled"):
        solve_with_nova(
            _recorded_detections(), RECORDED_SHAPE, _settings(server), cancelled=lambda: True
        )

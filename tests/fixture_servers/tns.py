"""A local Transient Name Server API and a local Fink resolver, answering in their JSON.

TNS (:class:`TNSFixture`): ``POST /api/get/object`` with the bot's User-Agent
``tns_marker{"tns_id": <id>, "type": "bot", "name": "<name>"}`` and the form fields
``api_key`` and ``data`` (JSON ``{"objname": "2024abc", ...}``, url-encoded or
multipart). A request without the right marker or key gets HTTP 401
``{"id_code": 401, "id_message": "Unauthorized"}``; a known object gets
``{"id_code": 200, "id_message": "OK", "data": {"received_data": ..., "reply": {objname,
name_prefix, ra, dec, radeg, decdeg, object_type, ...}}}``; an unknown one the same
envelope with ``"reply": {"name": {"110": {"message": "No results found.",
"message_id": 110}}}``.

Fink (:class:`FinkFixture`): ``POST /api/v1/resolver`` with JSON
``{"resolver": "tns", "name": "SN 2024abc"}``; the answer is a JSON list of rows
``{"d:fullname", "d:internalname", "d:ra", "d:declination", "d:type", "d:redshift",
"key:time"}`` whose full name starts with the query (case ignored), as Fink's
prefix search on its TNS table does; ``[]`` when none does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from tests.fixture_servers.base import FixtureServer, Reply, Request

JSON_TYPE = "application/json"
TNS_PATH = "/api/get/object"
FINK_PATH = "/api/v1/resolver"
BOT_ID = "123456"
BOT_NAME = "skysift_test_bot"
API_KEY = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class TNSObject:
    """One TNS object: designation (``2024abc``), prefix, position, type, survey name."""

    designation: str
    prefix: str
    ra: float
    dec: float
    type: str = "SN Ia"
    internal_name: str = "ZTF24aaaaaaa"

    @property
    def fullname(self) -> str:
        return f"{self.prefix} {self.designation}"


def _json(body: dict | list, status: int = 200) -> Reply:
    return Reply(status, json.dumps(body).encode(), JSON_TYPE)


def form_fields(request: Request) -> dict[str, str]:
    """Fields of a url-encoded or multipart form body."""
    kind = request.headers.get("Content-Type", "")
    if kind.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + request.body
        )
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True).decode()
        return fields
    return {k: v[-1] for k, v in parse_qs(request.text, keep_blank_values=True).items()}


def tns_reply(obj: TNSObject) -> dict:
    """The ``reply`` of a get/object answer (the fields a client may read)."""
    position = SkyCoord(obj.ra * u.deg, obj.dec * u.deg)
    return {
        "objname": obj.designation,
        "name_prefix": obj.prefix,
        "objid": 100000,
        "object_type": {"name": obj.type, "id": 3},
        "redshift": None,
        "ra": position.ra.to_string(u.hour, sep=":", precision=3, pad=True),
        "dec": position.dec.to_string(sep=":", precision=2, alwayssign=True, pad=True),
        "radeg": obj.ra,
        "decdeg": obj.dec,
        "radeg_err": 0.1,
        "decdeg_err": 0.1,
        "hostname": None,
        "internal_names": obj.internal_name,
        "discoverydate": "2024-01-02 03:04:05.000",
        "discoverymag": 18.5,
        "public": 1,
    }


class TNSFixture(FixtureServer):
    """A local TNS API with one bot (``bot_id``, ``bot_name``, ``api_key``)."""

    def __init__(
        self,
        bot_id: str = BOT_ID,
        bot_name: str = BOT_NAME,
        api_key: str = API_KEY,
        slow_seconds: float = 5.0,
    ):
        super().__init__(self._answer, self._answer_empty, slow_seconds)
        self.bot_id, self.bot_name, self.api_key = bot_id, bot_name, api_key
        self.objects: dict[str, TNSObject] = {}

    def add(self, obj: TNSObject) -> None:
        self.objects[obj.designation] = obj

    def _authorised(self, request: Request, fields: dict[str, str]) -> bool:
        agent = request.headers.get("User-Agent", "")
        if not agent.startswith("tns_marker"):
            return False
        try:
            marker = json.loads(agent[len("tns_marker") :])
        except ValueError:
            return False
        return (
            str(marker.get("tns_id")) == self.bot_id
            and marker.get("type") == "bot"
            and marker.get("name") == self.bot_name
            and fields.get("api_key") == self.api_key
        )

    def _answer(self, request: Request, empty: bool = False) -> Reply:
        if request.method != "POST" or request.path.rstrip("/") != TNS_PATH:
            return _json({"id_code": 404, "id_message": "Not Found"}, 404)
        fields = form_fields(request)
        if not self._authorised(request, fields):
            return _json({"id_code": 401, "id_message": "Unauthorized", "data": {}}, 401)
        try:
            received = json.loads(fields.get("data", ""))
        except ValueError:
            return _json({"id_code": 400, "id_message": "Bad request", "data": {}}, 400)
        obj = None if empty else self.objects.get(str(received.get("objname", "")))
        if obj is None:
            reply = {"name": {"110": {"message": "No results found.", "message_id": 110}}}
        else:
            reply = tns_reply(obj)
        body = {
            "id_code": 200,
            "id_message": "OK",
            "data": {"received_data": received, "reply": reply},
        }
        return _json(body)

    def _answer_empty(self, request: Request) -> Reply:
        return self._answer(request, empty=True)


class FinkFixture(FixtureServer):
    """A local Fink API answering its TNS resolver."""

    def __init__(self, slow_seconds: float = 5.0):
        super().__init__(self._answer, lambda request: _json([]), slow_seconds)
        self.objects: list[TNSObject] = []

    def add(self, obj: TNSObject) -> None:
        self.objects.append(obj)

    def queried_names(self) -> list[str]:
        return [json.loads(r.text).get("name", "") for r in self.requests if r.body]

    def _answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path.rstrip("/") != FINK_PATH:
            return Reply(404, b"not found", "text/plain")
        try:
            payload = json.loads(request.text)
        except ValueError:
            return Reply(400, b"Bad request: the body is not JSON", "text/plain")
        if payload.get("resolver") != "tns":
            return _json([])
        query = str(payload.get("name", "")).lower()
        rows = [
            {
                "d:declination": obj.dec,
                "d:fullname": obj.fullname,
                "d:internalname": obj.internal_name,
                "d:ra": obj.ra,
                "d:redshift": None,
                "d:type": obj.type,
                "key:time": 1704164645000,
            }
            for obj in self.objects
            if query and obj.fullname.lower().startswith(query)
        ]
        return _json(rows)


@pytest.fixture
def tns_server():
    """A running :class:`TNSFixture` (bot :data:`BOT_ID`, key :data:`API_KEY`), no objects."""
    with TNSFixture(slow_seconds=3.0) as server:
        yield server


@pytest.fixture
def fink_server():
    """A running :class:`FinkFixture` with no objects."""
    with FinkFixture(slow_seconds=3.0) as server:
        yield server

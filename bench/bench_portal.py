"""Portal figures: upload → inspection result on a 4096² float32 image (embedded mode),
SSE latency from worker to client, and memory of the web process.

Run: ``uv run python bench/bench_portal.py [--size 4096] [--repeat 3]``. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parent.parent


def make_image(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(1000.0, 15.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    star = 20000 * np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 1.5**2))
    for x, y in rng.integers(100, size - 100, (300, 2)):
        data[y - 32 : y + 32, x - 32 : x + 32] += star.astype(np.float32)
    header = fits.Header({"GAIN": 1.5, "SATURATE": 65000.0, "EXPTIME": 60.0, "FILTER": "r"})
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def sign_in(client: httpx.Client, base: str) -> str:
    """Create the first (admin) account of the fresh server, which signs the client in,
    and an API token for it (the API accepts changes only with a token)."""
    client.get(f"{base}/setup")
    client.headers["x-csrftoken"] = client.cookies.get("csrftoken", "")
    password = secrets.token_urlsafe(16)
    client.post(
        f"{base}/setup",
        data={"username": "bench", "password": password, "password2": password},
        follow_redirects=True,
    ).raise_for_status()
    page = client.post(f"{base}/profile/tokens", data={"name": "bench"})
    page.raise_for_status()
    found = re.search(r'id="new-token">([^<]+)<', page.text)
    if found is None:
        raise SystemExit("could not create an API token on the bench server")
    return found.group(1).strip()


def run_once(client: httpx.Client, base: str, image: Path, token: str) -> dict:
    started = time.monotonic()
    response = client.post(
        f"{base}/tasks/upload",
        content=image.read_bytes(),
        headers={"x-filename": image.name, "accept": "application/json"},
    )
    response.raise_for_status()
    uploaded = time.monotonic()
    task_id = response.json()["id"]
    latencies = []
    with client.stream("GET", f"{base}/tasks/{task_id}/events", timeout=600) as stream:
        # The API runs the step with its defaults (cosmic-ray masking included).
        client.post(
            f"{base}/api/tasks/{task_id}/steps/inspect",
            json={},
            headers={"authorization": f"Bearer {token}"},
        ).raise_for_status()
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                try:
                    data = json.loads(line[5:])
                except ValueError:
                    raise SystemExit(f"bad event line: {line!r}") from None
                latencies.append(time.time() - data["t"])
                if event == "state" and data["state"] in ("done", "failed"):
                    break
    done = time.monotonic()
    # "shown": the page fragment with the result, as the browser fetches it after the event
    html = client.get(f"{base}/tasks/{task_id}/steps/inspect").text
    shown = time.monotonic()
    assert "Result" in html, "inspection did not produce a result"
    return {
        "upload_s": uploaded - started,
        "inspect_s": done - uploaded,
        "total_s": shown - started,
        "sse_latency_ms": [1000 * v for v in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / f"bench_{args.size}.fits"
        make_image(image, args.size)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSIFT_")}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "web.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(Path(tmp) / "data"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=600) as client:
                for _ in range(100):
                    try:
                        client.get(f"{base}/login")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                token = sign_in(client, base)
                idle_rss, _ = rss_mib(server.pid)
                runs = [run_once(client, base, image, token) for _ in range(args.repeat)]
            rss, peak = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait()
    latencies = [v for run in runs for v in run["sse_latency_ms"]]
    print(f"image {args.size}x{args.size} float32, {args.repeat} runs, embedded mode")
    print(f"{'figure':45s} {'median':>10s} {'max':>10s}")
    for key, label in (
        ("upload_s", "upload (s)"),
        ("inspect_s", "inspection run incl. queue (s)"),
        ("total_s", "upload -> result shown (s)"),
    ):
        values = [run[key] for run in runs]
        print(f"{label:45s} {statistics.median(values):10.2f} {max(values):10.2f}")
    print(
        f"{'SSE latency worker -> client (ms)':45s} {statistics.median(latencies):10.1f} "
        f"{max(latencies):10.1f}  ({len(latencies)} events)"
    )
    print(
        f"{'web process RSS idle / after / peak (MiB)':45s} {idle_rss:.0f} / {rss:.0f} / {peak:.0f}"
    )


if __name__ == "__main__":
    main()

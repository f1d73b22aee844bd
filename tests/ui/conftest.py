import dataclasses
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(studio):
    """Serve a built studio on a free port; returns (demo, url). A free port can be taken between finding
    it and binding it, so the launch is tried on another one, three times in all."""
    from studio.ui.app import serve

    for attempt in range(3):
        studio.settings = dataclasses.replace(studio.settings, port=free_port())
        try:
            return serve(studio.facade), f"http://127.0.0.1:{studio.settings.port}"
        except OSError:
            if attempt == 2:
                raise


@pytest.fixture
def app_url(settings, registry, tmp_path, monkeypatch):
    """A launched studio on the test backend; yields its URL."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from studio.wiring import build_studio

    studio = build_studio(settings, registry)
    try:
        demo, url = launch(studio)
    except OSError:
        studio.close()
        raise
    try:
        yield url + "/", studio
    finally:
        demo.close()
        studio.close()

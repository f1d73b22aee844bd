import dataclasses
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(settings, registry, tmp_path, monkeypatch):
    """A launched studio on the test backend; yields its URL."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from studio.ui.app import serve
    from studio.wiring import build_studio

    studio = build_studio(settings, registry)
    for attempt in range(3):  # a free port can be taken between finding it and binding it
        studio.settings = dataclasses.replace(settings, port=free_port())
        try:
            demo = serve(studio.facade)
            break
        except OSError:
            if attempt == 2:
                studio.close()
                raise
    settings = studio.settings
    try:
        yield f"http://127.0.0.1:{settings.port}/", studio
    finally:
        demo.close()
        studio.close()

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

    settings = dataclasses.replace(settings, port=free_port())
    studio = build_studio(settings, registry)
    demo = serve(studio.facade)
    try:
        yield f"http://127.0.0.1:{settings.port}/", studio
    finally:
        demo.close()
        studio.close()

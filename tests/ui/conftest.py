import contextlib
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


@contextlib.contextmanager
def serving(studio):
    """A built studio, served until the block ends; then the server and the studio are closed (the studio
    too when the launch fails). Yields the URL without a trailing slash."""
    try:
        demo, url = launch(studio)
    except BaseException:
        studio.close()
        raise
    try:
        yield url
    finally:
        demo.close()
        studio.close()


def test_registry():
    """A registry of the test backend alone, for fixtures wider than one test (module scope)."""
    from pipelines.contract import ModelRegistry, RegistryEntry
    from tests.support.fakes import TEST_SPEC, GradientBackend

    backend = GradientBackend()
    return ModelRegistry({TEST_SPEC.id: RegistryEntry(TEST_SPEC, lambda device, profile: backend)},
                         default_id=TEST_SPEC.id)


test_registry.__test__ = False  # a helper, not a test


@pytest.fixture
def app_url(settings, registry, tmp_path, monkeypatch):
    """A launched studio on the test backend; yields its URL."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))
    from studio.wiring import build_studio

    studio = build_studio(settings, registry)
    with serving(studio) as url:
        yield url + "/", studio

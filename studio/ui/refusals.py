"""Requests that Gradio refuses before a handler runs, answered with a message (#14).

Gradio checks a call's values before the studio sees them: too few values, or a file parameter naming a
path on the server instead of an upload (`{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}`,
a folder, a path with a NUL byte). It raises a plain exception there, which the caller receives as
`{"error": null}` while the server log gets a traceback. `StudioBlocks` turns those into a `gr.Error`
that names the parameter and says what to send instead, logged in one line like every other refusal.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.exceptions import Error, InvalidPathError
from gradio_client.utils import is_file_obj_with_meta, traverse

log = logging.getLogger("studio.api")

NOT_AN_UPLOAD = ("upload the file with the request (gradio_client: handle_file(...)); paths on the server are "
                 "not accepted")


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def is_upload(path: Any, uploads: Path) -> bool:
    if not isinstance(path, str) or "\x00" in path:
        return False
    try:
        return Path(path).resolve().is_relative_to(uploads)
    except (OSError, ValueError):
        return False


def input_names(block_fn: Any) -> list[str]:
    """What each input of a handler is called: the function's parameters for the API (`gr.api`), else
    the component's elem_id or label."""
    inputs = list(block_fn.inputs)
    if inputs and all(type(b).__name__ == "Api" for b in inputs) and callable(block_fn.fn):
        params = [n for n, p in inspect.signature(block_fn.fn).parameters.items()
                  if p.annotation is not gr.Request and n != "request"]
        if len(params) >= len(inputs):
            return params[: len(inputs)]
    return [getattr(b, "elem_id", None) or getattr(b, "label", None) or f"input {i}" for i, b in enumerate(inputs)]


def refusal(block_fn: Any, inputs: list, e: Exception) -> str:
    """The message for a call Gradio could not preprocess."""
    names = input_names(block_fn)
    if not isinstance(inputs, list) or len(inputs) < len(names):
        got = len(inputs) if isinstance(inputs, list) else type(inputs).__name__
        return f"expected {len(names)} values ({', '.join(names)}), got {got}"
    uploads = upload_folder()
    for name, value in zip(names, inputs):
        bad: list[Any] = []

        def check(d: dict) -> dict:
            if not is_upload(d.get("path"), uploads):
                bad.append(d)
            return d

        traverse(value, check, is_file_obj_with_meta)
        if bad:
            return f"{name}: {NOT_AN_UPLOAD}"
    return f"the values sent could not be read ({type(e).__name__})"


class StudioBlocks(gr.Blocks):
    """gr.Blocks whose refusals before a handler runs are messages, not `{"error": null}`."""

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):  # type: ignore[no-untyped-def]
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Error:
            raise
        except (InvalidPathError, ValueError, TypeError, OSError) as e:
            message = refusal(block_fn, inputs, e)
            log.info("refused %s: %s", getattr(block_fn, "name", "?"), message)
            raise gr.Error(message, print_exception=False) from None


__all__ = ["NOT_AN_UPLOAD", "StudioBlocks", "input_names", "refusal"]

"""Prepared frames are exactly the frames the websockets library makes."""

import pytest
from websockets.frames import Frame, Opcode

from pocketquant.api.prepared_frames import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_text_frames_match_the_websockets_library(size: int) -> None:
    text = ("é" * size).encode()[:size] if size % 2 == 0 else b"x" * size
    expected = Frame(Opcode.TEXT, text).serialize(mask=False)
    assert text_frame(text) == expected
    assert text_frame(text[:3], text[3:], b"") == expected  # parts are joined

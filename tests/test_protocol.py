import json

import pytest

from pocketquant.domain import InvalidSymbolError, SymbolKey
from pocketquant.tradingview import protocol


def test_several_frames_in_one_message_split_in_order() -> None:
    message = protocol.encode_many(("a", [1]), ("b", ["x"])) + protocol.heartbeat(7)
    packets = protocol.parse_message(message)
    assert packets == [protocol.Command("a", [1]), protocol.Command("b", ["x"]), protocol.Heartbeat("~h~7")]


def test_frame_length_counts_utf16_units_not_bytes() -> None:
    korean = json.dumps({"m": "qsd", "p": ["qs", {"description": "삼성전자"}]}, ensure_ascii=False)
    emoji = json.dumps({"m": "qsd", "p": ["qs", {"description": "Dogecoin 🐕"}]}, ensure_ascii=False)
    assert protocol.frame(emoji).startswith(f"~m~{len(emoji) + 1}~m~")  # the emoji counts two
    assert protocol.frame(korean).startswith(f"~m~{len(korean)}~m~")
    assert len(korean.encode()) != len(korean)  # a byte-counting client would desync here
    message = protocol.frame(korean) + protocol.frame(emoji) + protocol.encode("after", [])
    assert protocol.split_frames(message) == [korean, emoji, '{"m":"after","p":[]}']


@pytest.mark.parametrize("text", ["Dogecoin 🐕 / TetherUS", "🐕", "a🐕b🐕", "삼성전자 🐕"])
def test_astral_characters_in_the_last_frame(text: str) -> None:
    payload = json.dumps({"m": "symbol_resolved", "p": [text]}, ensure_ascii=False)
    for message in (protocol.frame(payload), protocol.heartbeat(1) + protocol.frame(payload)):
        assert protocol.split_frames(message)[-1] == payload
    with pytest.raises(protocol.ProtocolError):
        protocol.split_frames(f"~m~{len(payload) + text.count('🐕') + 1}~m~{payload}")


def test_greeting_without_method_is_recognised() -> None:
    assert protocol.parse_message(protocol.frame('{"session_id":"x"}')) == [protocol.Greeting({"session_id": "x"})]


@pytest.mark.parametrize("bad", ["junk", "~m~5~m~ab", "~m~x~m~ab", "~m~2~m~{}~m~", '~m~3~m~"a"'])
def test_malformed_messages_raise_protocol_error(bad: str) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_message(bad)


@pytest.mark.parametrize(
    ("ticker", "expected"),
    [
        ("NASDAQ:AAPL", SymbolKey("NASDAQ", "AAPL")),
        ("nasdaq:aapl", SymbolKey("NASDAQ", "AAPL")),
        ('={"symbol":"COINBASE:LRCUSD","adjustment":"splits","session":"extended"}', SymbolKey("COINBASE", "LRCUSD")),
        ("CME_MINI:ES1!", SymbolKey("CME_MINI", "ES1!")),
    ],
)
def test_tickers_and_resolve_strings_normalise(ticker: str, expected: SymbolKey) -> None:
    assert SymbolKey.from_ticker(ticker) == expected


@pytest.mark.parametrize(
    ("exchange", "symbol", "field"),
    [
        ("NAS DAQ", "AAPL", "exchange"),
        ("", "AAPL", "exchange"),
        ("NASDAQ", "", "symbol"),
        ("NASDAQ", "AA PL", "symbol"),
        ("NASDAQ", "A" * 49, "symbol"),
        ("NASDAQ", "-AAPL", "symbol"),
    ],
)
def test_malformed_symbols_name_the_bad_field(exchange: str, symbol: str, field: str) -> None:
    with pytest.raises(InvalidSymbolError) as info:
        SymbolKey.parse(exchange, symbol)
    assert info.value.field == field

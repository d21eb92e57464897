"""Language detection reads a bounded sample, and answers as the longer sample did before."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.convert import convert, language
from connector.convert.language import detect_language

CORPUS = Path(__file__).parent / "corpus"


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
def test_the_short_sample_answers_as_the_long_one_did(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every corpus text gets the language that a 5,000-character sample (the converter's before it
    read 1,000) gave it. Repeated past 20,000 characters, it never gets another language; it may get
    one where the long sample stayed unsure (2 of the corpus texts)."""
    item = convert((CORPUS / name).read_bytes())
    text = item.text_body
    long = (text.strip() + "\n\n") * (20_000 // (len(text.strip()) + 2) + 1) if text.strip() else text
    short_answers = (detect_language(text), detect_language(long))
    monkeypatch.setattr(language, "_SAMPLE_CHARS", 5000)
    long_answers = (detect_language(text), detect_language(long))
    assert item.language == short_answers[0] == long_answers[0]
    assert long_answers[1] in (None, short_answers[1])


def test_a_long_quote_before_the_reply_does_not_hide_the_reply() -> None:
    """When quotes fill the first 4,000 characters, the sample is taken from further on."""
    quote = "> Sehr geehrte Damen und Herren, die Lieferung kam leider beschädigt an.\n" * 80
    reply = "Thank you for your message, we will send a replacement for the damaged parts tomorrow.\n" * 5
    assert len(quote) > 4000
    assert detect_language(quote + reply) == "en"

"""Importance from the several headers mail clients use for it: "low" | "normal" | "high"."""

from __future__ import annotations

import re


def importance_from(headers: dict[str, list[str]]) -> str:
    """First decisive header wins: Importance, X-Priority, Priority, X-MSMail-Priority."""
    for value in headers.get("importance", []):
        word = value.strip().lower()
        if word.startswith("high"):
            return "high"
        if word.startswith("low"):
            return "low"
        if word.startswith("normal"):
            return "normal"
    for value in headers.get("x-priority", []):
        match = re.match(r"\s*(\d)", value)
        if match:
            level = int(match.group(1))
            if level in (1, 2):
                return "high"
            if level in (4, 5):
                return "low"
            return "normal"
        word = value.strip().lower()
        if word.startswith(("high", "urgent")):
            return "high"
        if word.startswith("low"):
            return "low"
    for value in headers.get("priority", []):
        word = value.strip().lower()
        if word.startswith("urgent"):
            return "high"
        if word.startswith("non-urgent"):
            return "low"
        if word.startswith("normal"):
            return "normal"
    for value in headers.get("x-msmail-priority", []):
        word = value.strip().lower()
        if word.startswith("high"):
            return "high"
        if word.startswith("low"):
            return "low"
    return "normal"

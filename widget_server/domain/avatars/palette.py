"""The palette tables: every colour an avatar may contain is one of these literals. A request only ever picks a
row by an enum value, so no user string can reach the SVG; a test checks every fill and stroke against `ALL`."""

from __future__ import annotations

# skin tone -> (base, shadow: neck and ears, line: nose and age lines, lips)
SKIN: dict[str, tuple[str, str, str, str]] = {
    "very_fair": ("#fbe3d6", "#efc7b4", "#c99a86", "#c7646a"),
    "fair": ("#f6d2bc", "#e8b79d", "#bf8d74", "#c25e62"),
    "light": ("#efc29f", "#dfa882", "#b27f5e", "#b85a57"),
    "light_medium": ("#e3ab7f", "#cf9466", "#a46c45", "#a9524c"),
    "medium": ("#d09566", "#ba7d50", "#8e5a34", "#98483f"),
    "olive": ("#c99a6b", "#b08257", "#80603c", "#8f4a3c"),
    "tan": ("#b97a4f", "#a1663f", "#764628", "#7e3c30"),
    "brown": ("#9a6240", "#824f31", "#5c3720", "#6a3026"),
    "dark_brown": ("#6f4328", "#5a341e", "#3d2314", "#4e231b"),
    "deep": ("#4d2e1c", "#3e2416", "#2a180e", "#3a1a13"),
}

# hair colour -> (base, dark: brows, beard shading)
HAIR: dict[str, tuple[str, str]] = {
    "black": ("#231f20", "#121011"),
    "dark_brown": ("#3b2719", "#2a1b11"),
    "brown": ("#5e3b22", "#452a17"),
    "light_brown": ("#8a5f3c", "#6d4a2d"),
    "blonde": ("#e0bb6d", "#b8904a"),
    "strawberry_blonde": ("#d9985f", "#b07342"),
    "red": ("#b4492a", "#8e3519"),
    "auburn": ("#8b3a22", "#6b2a17"),
    "gray": ("#a7a5a8", "#7d7c80"),
    "white": ("#e8e6e3", "#b9b6b2"),
}

EYES: dict[str, str] = {
    "brown": "#6b4226",
    "dark_brown": "#3f2617",
    "hazel": "#8e7240",
    "amber": "#b7802c",
    "green": "#5c8a4e",
    "blue": "#4f86c6",
    "gray": "#8a98a6",
}

BACKGROUNDS = ("#dbeafe", "#e0f2f1", "#fef3c7", "#fce7f3", "#ede9fe", "#dcfce7", "#ffedd5", "#e0e7ff")
SHIRTS = ("#2563eb", "#0f766e", "#9333ea", "#e11d48", "#ea580c", "#334155", "#16a34a", "#0891b2")
PUPIL = "#1b1b1f"
GLINT = "#ffffff"
BLUSH = "#f28c8c"
FRAME = "#2b2b33"  # glasses

ALL: frozenset[str] = frozenset(
    [c for row in SKIN.values() for c in row] + [c for row in HAIR.values() for c in row] + list(EYES.values())
    + list(BACKGROUNDS) + list(SHIRTS) + [PUPIL, GLINT, BLUSH, FRAME])

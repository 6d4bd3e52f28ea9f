"""The hand-drawn shapes of a portrait (the project's own work), as SVG path data in a 128x128 box: integer
coordinates only, written out here rather than computed with trigonometry, so that no floating-point rounding of
any platform can change a byte. The face is centred on x=64; eyes sit on y=60."""

from __future__ import annotations

# face shape -> (the face element, half its width at the ears)
FACES: dict[str, tuple[str, int]] = {
    "oval": ('<ellipse cx="64" cy="59" rx="25" ry="31"', 25),
    "round": ('<ellipse cx="64" cy="60" rx="28" ry="29"', 28),
    "oblong": ('<ellipse cx="64" cy="59" rx="23" ry="33"', 23),
    "square": ('<path d="M39 42Q39 28 53 28H75Q89 28 89 42V70Q89 89 64 90Q39 89 39 70Z"', 25),
    "heart": ('<path d="M38 46Q38 28 64 28Q90 28 90 46Q90 66 77 80Q68 89 64 90Q60 89 51 80Q38 66 38 46Z"', 26),
    "diamond": ('<path d="M64 28Q80 29 86 48Q90 58 85 70Q75 88 64 90Q53 88 43 70Q38 58 42 48Q48 29 64 28Z"', 25),
}

SHOULDERS = "M12 128C14 108 36 99 64 99C92 99 114 108 116 128Z"
NECK = '<rect x="55" y="78" width="18" height="26" rx="7"'
COLLAR = "M52 99Q64 112 76 99"

# Hair behind the head, by texture and length (None: nothing behind).
BACK: dict[tuple[str, str], str] = {
    ("straight", "medium"): "M33 52Q32 18 64 18Q96 18 95 52V84Q95 90 89 90H39Q33 90 33 84Z",
    ("straight", "long"): "M31 52Q30 16 64 16Q98 16 97 52V112Q97 120 89 120H39Q31 120 31 112Z",
    ("wavy", "medium"): "M33 52Q32 18 64 18Q96 18 95 52Q99 62 94 72Q99 82 92 90H36Q29 82 34 72Q29 62 33 52Z",
    ("wavy", "long"): ("M31 52Q30 16 64 16Q98 16 97 52Q102 64 95 76Q102 88 95 100Q102 111 92 120H36Q26 111 33 100"
                       "Q26 88 33 76Q26 64 31 52Z"),
}
# Curly and coily hair behind the head: circles (cx, cy, r), by texture and length.
BACK_CURLS: dict[tuple[str, str], tuple[tuple[int, int, int], ...]] = {
    ("curly", "medium"): ((38, 52, 10), (36, 64, 10), (38, 76, 10), (90, 52, 10), (92, 64, 10), (90, 76, 10)),
    ("curly", "long"): ((37, 52, 11), (34, 65, 11), (35, 78, 11), (33, 91, 11), (37, 104, 11), (91, 52, 11),
                        (94, 65, 11), (93, 78, 11), (95, 91, 11), (91, 104, 11)),
    ("coily", "medium"): ((64, 50, 38),),
    ("coily", "long"): ((64, 54, 44),),
}

# Hair over the forehead, by texture and length.
FRONT: dict[tuple[str, str], str] = {
    ("straight", "short"): "M37 54Q35 22 64 21Q93 22 91 54Q89 40 79 35Q66 41 47 36Q40 42 37 54Z",
    ("straight", "medium"): "M35 56Q33 20 64 20Q95 20 93 56Q91 38 80 35H48Q37 38 35 56Z",
    ("straight", "long"): "M34 58Q31 18 64 18Q97 18 94 58Q92 40 80 34Q64 44 52 34Q38 40 34 58Z",
    ("wavy", "short"): "M37 54Q35 22 64 21Q93 22 91 54Q88 42 82 40Q78 34 70 38Q62 33 55 38Q46 34 43 42Q38 45 37 54Z",
    ("wavy", "medium"): "M35 56Q33 20 64 20Q95 20 93 56Q90 42 84 40Q80 33 72 37Q64 32 56 37Q48 33 44 40Q37 43 35 56Z",
    ("wavy", "long"): "M34 58Q31 18 64 18Q97 18 94 58Q91 42 85 39Q80 31 71 36Q64 31 57 36Q48 31 43 39Q36 42 34 58Z",
}
# Curly and coily hair over the forehead: circles along the hairline.
FRONT_CURLS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "curly": ((38, 44, 8), (41, 35, 8), (46, 27, 8), (55, 22, 8), (64, 20, 8), (73, 22, 8), (82, 27, 8),
              (87, 35, 8), (90, 44, 8)),
    "coily": ((37, 42, 7), (39, 33, 7), (44, 26, 7), (51, 21, 7), (59, 18, 7), (69, 18, 7), (77, 21, 7),
              (84, 26, 7), (89, 33, 7), (91, 42, 7)),
}
# Short coily hair: a rounded top.
COILY_SHORT = "M37 52Q34 14 64 14Q94 14 91 52Q87 36 64 35Q41 36 37 52Z"
BUZZ = "M39 48Q37 24 64 23Q91 24 89 48Q86 33 64 31Q42 33 39 48Z"  # a buzz cut: a thin cap
BUN = (64, 15, 11)  # an updo's bun, on top
GLASSES = "M47 60a7 6 0 1 0 14 0a7 6 0 1 0 -14 0M67 60a7 6 0 1 0 14 0a7 6 0 1 0 -14 0M61 59Q64 57 67 59"

EYES_AT = ((54, 60), (74, 60))
BROWS = ("M49 53Q54 50 59 52", "M69 52Q74 50 79 53")
NOSE = "M64 62Q61 69 64 70"
SMILE = "M57 77Q64 82 71 77"

# Lines that come with age: (the age from which they show, path data).
AGE_LINES: tuple[tuple[int, str], ...] = (
    (40, "M52 73Q50 77 52 80M76 73Q78 77 76 80"),  # smile lines
    (50, "M55 40Q64 37 73 40"),  # a forehead line
    (60, "M43 58L47 60M43 62L47 61M85 58L81 60M85 62L81 61"),  # crow's feet
    (65, "M53 45Q64 42 75 45"),  # a second forehead line
)

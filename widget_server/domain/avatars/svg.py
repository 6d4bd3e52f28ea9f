"""The portrait: `render(attributes)` is a pure function from the attribute enums to the bytes of a small SVG
(flat style, a 128x128 viewBox, a circle background). Nothing but table lookups reaches the output: colours come
from `palette`, shapes from `shapes`, numbers are integers. The same attributes give byte-identical SVG on every
run; the background and shirt colours are picked by a hash of the attributes, so they vary between people but not
between runs. The SVG holds no script, no `<foreignObject>`, no `href` and no external reference: only a clip path
it names itself (`url(#c)`)."""

from __future__ import annotations

import hashlib

from widget_server.domain.avatars import palette, shapes
from widget_server.domain.avatars.attributes import AvatarAttributes

MASCULINE = frozenset({"male", "transgender_male"})
FEMININE = frozenset({"female", "transgender_female"})
GREY_AT, WHITE_AT, TEMPLES_AT = 65, 80, 50  # ages from which hair turns grey, white, and grey at the temples
BEARD_FROM = 25
OPEN = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 128 128" width="128" height="128">'


LENGTHS = {"short": "short", "buzz_cut": "short", "slicked_back": "short", "curly_top": "short", "pixie": "short",
           "updo": "short", "medium": "medium", "bob": "medium", "afro": "medium", "long": "long",
           "shoulder_length": "long", "braids": "long", "locs": "long", "twists": "long"}


def hair_length(attrs: AvatarAttributes) -> str:
    """The hair style's length; without one, gender presentation shown as hair length: short, long, or a
    chin-length cut for everyone else."""
    if attrs.hair_style in LENGTHS:
        return LENGTHS[attrs.hair_style]
    return "short" if attrs.gender in MASCULINE else "long" if attrs.gender in FEMININE else "medium"


def hair_texture(attrs: AvatarAttributes) -> str:
    """The texture drawn: a bald style has none, an afro is coily whatever the texture says."""
    if attrs.hair_style == "bald":
        return "bald"
    return "coily" if attrs.hair_style == "afro" else attrs.hair_texture


def shown_hair_color(attrs: AvatarAttributes) -> str:
    """Hair greys with age: grey from 65, white from 80 (white hair stays white)."""
    if attrs.age >= WHITE_AT or attrs.hair_color == "white":
        return "white"
    return "gray" if attrs.age >= GREY_AT else attrs.hair_color


def _digest(attrs: AvatarAttributes) -> bytes:
    canonical = ",".join(f"{k}={v}" for k, v in sorted(attrs.model_dump().items()))
    return hashlib.sha256(canonical.encode()).digest()


def _circles(fill: str, circles: tuple[tuple[int, int, int], ...]) -> str:
    inner = "".join(f'<circle cx="{x}" cy="{y}" r="{r}"/>' for x, y, r in circles)
    return f'<g fill="{fill}">{inner}</g>'


def _back_hair(texture: str, length: str, fill: str) -> str:
    if (texture, length) in shapes.BACK:
        return f'<path fill="{fill}" d="{shapes.BACK[(texture, length)]}"/>'
    if (texture, length) in shapes.BACK_CURLS:
        return _circles(fill, shapes.BACK_CURLS[(texture, length)])
    return ""


def _front_hair(texture: str, length: str, fill: str, style: str | None) -> str:
    if texture == "bald":
        return ""
    if style == "buzz_cut":
        return f'<path fill="{fill}" d="{shapes.BUZZ}"/>'
    if style == "updo":
        return _circles(fill, (shapes.BUN,)) + _front_hair(texture, length, fill, None)
    if texture == "coily" and length == "short":
        return f'<path fill="{fill}" d="{shapes.COILY_SHORT}"/>' + _circles(fill, shapes.FRONT_CURLS["coily"][2:-2])
    if texture in shapes.FRONT_CURLS:
        return _circles(fill, shapes.FRONT_CURLS[texture])
    return f'<path fill="{fill}" d="{shapes.FRONT[(texture, length)]}"/>'


def _temples(attrs: AvatarAttributes, shown: str) -> str:
    """Grey at the temples from 50, before the whole head greys."""
    if hair_texture(attrs) == "bald" or attrs.age < TEMPLES_AT or shown in ("gray", "white"):
        return ""
    return f'<path fill="{palette.HAIR["gray"][0]}" d="M36 44Q36 52 38 56L42 46ZM92 44Q92 52 90 56L86 46Z"/>'


def _beard(attrs: AvatarAttributes, half_width: int, fill: str, digest: bytes) -> str:
    if attrs.gender not in MASCULINE or attrs.age < BEARD_FROM or digest[2] % 3:
        return ""  # a third of the masculine adults have one
    left, right = 64 - half_width + 2, 64 + half_width - 2
    return (f'<path fill="{fill}" d="M{left} 64Q{left + 1} 91 64 93Q{right - 1} 91 {right} 64Q{right - 4} 80 73 80'
            f'Q64 75 55 80Q{left + 4} 80 {left} 64Z"/>')


def _eyes(eye: str) -> str:
    parts = []
    for x, y in shapes.EYES_AT:
        parts.append(f'<circle cx="{x}" cy="{y}" r="4" fill="{eye}"/><circle cx="{x}" cy="{y}" r="2" '
                     f'fill="{palette.PUPIL}"/><circle cx="{x + 1}" cy="{y - 2}" r="1" fill="{palette.GLINT}"/>')
    return "".join(parts)


def _features(attrs: AvatarAttributes, brow: str, line: str, lips: str) -> str:
    brows = "".join(f'<path d="{d}"/>' for d in shapes.BROWS)
    aged = "".join(d for since, d in shapes.AGE_LINES if attrs.age >= since)
    wrinkles = f'<path fill="none" stroke="{line}" stroke-width="1.2" stroke-linecap="round" d="{aged}"/>' if aged \
        else ""
    return (f'<g fill="none" stroke="{brow}" stroke-width="2.4" stroke-linecap="round">{brows}</g>'
            + _eyes(palette.EYES[attrs.eye_color])
            + f'<path fill="none" stroke="{line}" stroke-width="1.6" stroke-linecap="round" d="{shapes.NOSE}"/>'
            + f'<path fill="none" stroke="{lips}" stroke-width="2.2" stroke-linecap="round" d="{shapes.SMILE}"/>'
            + wrinkles + _glasses(attrs))


def _glasses(attrs: AvatarAttributes) -> str:
    if attrs.vision_correction != "glasses":
        return ""
    return f'<path fill="none" stroke="{palette.FRAME}" stroke-width="1.8" d="{shapes.GLASSES}"/>'


def render(attrs: AvatarAttributes) -> bytes:
    """The SVG of these attributes (UTF-8, under 6 KB)."""
    digest = _digest(attrs)
    skin, shadow, line, lips = palette.SKIN[attrs.skin_tone]
    shown = shown_hair_color(attrs)
    hair, hair_dark = palette.HAIR[shown]
    length, texture = hair_length(attrs), hair_texture(attrs)
    face, half = shapes.FACES[attrs.face_shape]
    bg = palette.BACKGROUNDS[digest[0] % len(palette.BACKGROUNDS)]
    shirt = palette.SHIRTS[digest[1] % len(palette.SHIRTS)]
    body = [
        f'<rect width="128" height="128" fill="{bg}"/>',
        f'<path fill="{shirt}" d="{shapes.SHOULDERS}"/>',
        _back_hair(texture, length, hair),
        f'{shapes.NECK} fill="{shadow}"/>',
        f'<path fill="none" stroke="{shadow}" stroke-width="3" d="{shapes.COLLAR}"/>',
        f'<circle cx="{64 - half}" cy="61" r="6" fill="{shadow}"/><circle cx="{64 + half}" cy="61" r="6" '
        f'fill="{shadow}"/>',
        f'{face} fill="{skin}"/>',
        f'<g fill="{palette.BLUSH}" opacity="0.25"><circle cx="50" cy="70" r="5"/><circle cx="78" cy="70" r="5"/></g>',
        _beard(attrs, half, hair_dark if shown == attrs.hair_color else hair, digest),
        _front_hair(texture, length, hair, attrs.hair_style),
        _temples(attrs, shown),
        _features(attrs, hair_dark, line, lips),
    ]
    clip = '<defs><clipPath id="c"><circle cx="64" cy="64" r="64"/></clipPath></defs>'
    return (OPEN + clip + '<g clip-path="url(#c)">' + "".join(body) + "</g></svg>").encode()

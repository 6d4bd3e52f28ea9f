"""Whether a visitor's message is written in English, from its function words.

Topic boundaries read English messages with all-MiniLM-L6-v2 (the model their constants were chosen on, CLINC150
and XSTest included) and messages in the other supported languages with the multilingual encoder (`multilingual`),
whose vectors put "¿puedo devolver el casco?" next to "can I return the helmet". A message is taken for English
unless the words that only German, Spanish, French, Italian, Portuguese or Dutch use outnumber the English ones: a
short message without such words ("dark mode when", "tyre pressure?") stays with the English model. Chosen on the
development tenants under `bench/tenants/` (each message carries its language).
"""

from __future__ import annotations

import re

from widget_server.domain.guardrails import normalize

WORDS = re.compile(r"[^\W\d_]+")
# Words English shares with another of the languages ("a", "in", "die", "is"…) count for neither.
SHARED = frozenset("a in me no do so is die de o e en um war hat will also mist".split())
ENGLISH = frozenset("""
the an and or but are was were be been am does did can could would will shall should may might must have
has had i you he she we they my your our their it its this that these those what which who how when where why
not yes please to of on at for with from by about if than then just also there here any some all
i'm im don't dont can't cant won't wont it's its i've ive you're ur u pls thanks thank hi hello hey
""".split()) - SHARED
OTHER = frozenset("""
der die das und ist nicht ich du sie wir ihr mein meine ein eine einen einem einer mit von zu auf fur bei wie was
warum wann wo kann konnen habe hast hat sind war bitte danke auch noch schon aber oder wenn dass den dem des im
ich's gibt es mich mir dich dir uns euch kein keine nur sehr
el la los las y es no yo tu usted nosotros mi mis un una unos unas con de del en por para como que por que cuando
donde puedo puede tengo tiene hay esta estoy son gracias tambien pero o si mas muy lo le les se me te nos
le la les et est ne pas je tu il elle nous vous ils elles mon ma mes un une des avec de du dans pour comment que
quoi pourquoi quand ou peux peut j'ai ai avez sont c'est merci aussi mais si plus tres ce cette ces au aux
il lo la gli le e non io tu lui lei noi voi mio mia un uno una con di del della nel per come che perche quando
dove posso puo ho hai sono grazie anche ma se piu molto questo questa ci mi ti si
o a os as e nao eu voce ele ela nos meu minha um uma com do da no na por para como que porque quando onde posso
pode tenho tem sao obrigado obrigada tambem mas se mais muito isso esse essa
de het een en is niet ik jij je u wij we mijn met van voor op hoe wat waarom wanneer waar kan kunnen heb hebt
heeft zijn bedankt dank ook maar of als meer heel dit dat deze geen nog wel er
qual quale quali cual cuales welke welk voces jullie siete vous pra hola ciao bonjour hallo ola oi buongiorno
buenos buenas bom boa goedemiddag goedemorgen servus gruss salut chi ha ad wer fur falls aqui quantos tienen solo
non dice
""".split()) - ENGLISH - SHARED


def is_english(text: str) -> bool:
    """True unless the message's words of the other supported languages outnumber its English ones."""
    words = WORDS.findall(normalize.fold(text).text)
    other = sum(w in OTHER for w in words)
    return other <= sum(w in ENGLISH for w in words)

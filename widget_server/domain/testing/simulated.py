"""One run of a simulated case: the visitor model (`visitor`) writes each visitor message, the persona under test
answers through the turn visitors get, until the turn budget is spent, the conversation escalates, or the visitor
model says it is done. Then the whole conversation is checked (`at_some_turn`, `never`) and judged (`judge`).

Record and replay: what the visitor model wrote is kept in the cassette with the turn it drove (`Tape.visitor`),
so a replay calls neither the persona's model nor the visitor's. The visitor's request headers go with the
conversation: on its `conversation.started` event (`http.request.header.<name>`, as OpenTelemetry names them) and
in the visitor model's instructions (an `Accept-Language` is the language it writes in).
"""

from __future__ import annotations

import logging

from widget_server.domain.chat import conversations
from widget_server.domain.chat.turn import new_memory
from widget_server.domain.testing import assertions
from widget_server.domain.testing.cassette import NotInCassette
from widget_server.domain.testing.results import Attempt
from widget_server.domain.testing.suite import Case
from widget_server.domain.testing.turns import CHANNEL, Run, judged, one_turn
from widget_server.domain.testing.visitor import Visitor, parse, request, write
from widget_server.errors import WidgetError

log = logging.getLogger(__name__)


def header_attributes(visitor: Visitor) -> dict[str, list[str]]:
    return {f"http.request.header.{name.lower()}": [value] for name, value in visitor.headers.items()}


async def _written(run: Run, case: Case, visitor: Visitor, said: list[tuple[str, str]], repeat: int,
                   turn: int) -> str:
    """What the visitor model writes next: from the cassette in a replay, else from the model (and kept)."""
    if run.tape.replaying:
        stored = run.tape.stored_visitor()
        if stored is None:
            run.tape.missed = True
            raise NotInCassette(f"the cassette has no visitor message for case {case.name!r}, run {repeat + 1}, "
                                f"turn {turn + 1}: record it again (--record)")
        return stored
    text = await write(run.providers.get("simulator"), request(visitor, run.persona, said, run.suite.simulator))
    run.tape.visitor = text
    return text


def _similar(case: Case) -> tuple[str, ...]:
    """The texts the whole-conversation assertions compare each reply with (`similar_to`)."""
    expects = (case.at_some_turn, case.never)
    return tuple(e.similar_to.text for e in expects if e is not None and e.similar_to is not None)


async def _converse(run: Run, case: Case, visitor: Visitor, repeat: int, attempt: Attempt) -> None:
    conv = await conversations.start(run.deps, run.tenant_id, run.persona, conversations.visitor_id(None), CHANNEL,
                                     attributes=header_attributes(visitor))
    run.tap.take(conv.id)
    memory = new_memory(run.deps, conv)
    said: list[tuple[str, str]] = []
    attempt.ended = "max_turns"
    for i in range(visitor.max_turns):
        run.tape.begin(case.name, repeat, i)
        message, done = parse(await _written(run, case, visitor, said, repeat, i))
        if not message:  # done, or nothing more to say
            run.tape.keep({})
            attempt.ended = "visitor_done"
            return
        obs = await one_turn(run, conv, memory, message, _similar(case))
        if run.tape.missed:
            raise NotInCassette((obs.error or {}).get("message", "not in the cassette"))
        attempt.turns.append(obs)
        said.append((message, obs.text))
        if obs.escalated or done:
            attempt.ended = "escalated" if obs.escalated else "visitor_done"
            return


async def simulated(run: Run, case: Case, visitor: Visitor, repeat: int) -> Attempt:
    """One run of a simulated case, its whole-conversation assertions checked and judged."""
    attempt = Attempt()
    try:
        await _converse(run, case, visitor, repeat, attempt)
    except WidgetError as exc:
        attempt.error, attempt.ended = f"turn {len(attempt.turns) + 1}: {exc.message}", "error"
        return attempt
    except Exception as exc:  # one case's failure is that case's error; the suite goes on
        log.exception("simulated test case failed", extra={"case": case.name})
        attempt.error, attempt.ended = f"turn {len(attempt.turns) + 1}: {type(exc).__name__}", "error"
        return attempt
    if case.at_some_turn is not None:
        attempt.failures += assertions.at_some_turn(case.at_some_turn, attempt.turns)
    if case.never is not None:
        attempt.failures += assertions.never(case.never, attempt.turns)
    if case.judge is not None:
        await judged(run, attempt, case.judge, 0)
    return attempt

"""Chat: conversations and their turns, whatever the channel.

`conversations` finds or starts a conversation (and holds the rules for visitor ids and messages), `turn` runs one
visitor message through input check → provider stream → output check → store → events, `memory` is what turns
carry from one to the next, `channels` is each live conversation's frame log on this node (seq, resume, the
attached socket), `escalation` hands a conversation to a person and back, `feedback` takes ratings and widget
events, `deps` is what all of them need from the backends.
"""

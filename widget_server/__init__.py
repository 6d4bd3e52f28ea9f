"""widget_server: an embeddable persona chat widget and the ASGI backend behind it."""

__version__ = "0.1.0"

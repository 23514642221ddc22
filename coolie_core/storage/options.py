"""Storage options: one ``dict[str, str]`` for polars, delta-rs and obstore.

Keys are the Rust ``object_store`` configuration keys polars and delta-rs both accept
(``aws_endpoint_url``, ``aws_allow_http``, ``azure_storage_account_key``, ...). Secret values may
only be ``${ENV}`` references, expanded when a store is opened, never stored or shown expanded.

This module imports nothing from coolie so the catalog models can use its rules.
"""

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["check_option_values", "is_secret_option", "obstore_config"]

_ENV_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# Cloud prefixes polars and delta-rs accept in front of a key (``aws_allow_http`` = ``allow_http``).
_CLOUD_PREFIX = re.compile(r"^(aws_|azure_storage_|azure_|google_)")
# Credentials and anything derived from them; ``*_file`` keys name a file, not its content.
_SECRET = re.compile(r"secret|password|token|sas|access_key|account_key|master_key|(^|_)key(_base64)?$")
# obstore takes HTTP client settings apart from the store's own configuration (and panics on
# them inside ``config``), while polars and delta-rs take both in one map.
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
_BOOL_CLIENT_KEYS = frozenset({"allow_http", "allow_invalid_certificates", "randomize_addresses"})


def _bare(key: str) -> str:
    return _CLOUD_PREFIX.sub("", key.lower())


def is_secret_option(key: str) -> bool:
    """Whether an option holds a credential (its value must be a ``${ENV}`` reference).

    >>> is_secret_option("aws_secret_access_key"), is_secret_option("AZURE_STORAGE_ACCOUNT_KEY")
    (True, True)
    >>> is_secret_option("aws_endpoint_url"), is_secret_option("aws_web_identity_token_file")
    (False, False)
    """
    bare = _bare(key)
    return not bare.endswith("_file") and _SECRET.search(bare) is not None


def check_option_values(options: Mapping[str, str]) -> None:
    """Refuse a literal credential: secret options must be exactly ``${VAR}``.

    Raises:
        ValueError: naming the key (never the value).

    >>> check_option_values({"aws_secret_access_key": "${AWS_SECRET}", "aws_region": "eu-west-1"})
    >>> check_option_values({"aws_secret_access_key": "abc"})
    Traceback (most recent call last):
    ValueError: storage option aws_secret_access_key holds a literal secret; reference an environment variable instead, e.g. ${AWS_SECRET_ACCESS_KEY}
    """
    for key, value in options.items():
        if is_secret_option(key) and not _ENV_ONLY.fullmatch(value):
            raise ValueError(
                f"storage option {key} holds a literal secret; reference an environment variable "
                f"instead, e.g. ${{{key.upper()}}}"
            )


_ENV_PREFIX = {"s3": "AWS_", "az": "AZURE_", "abfss": "AZURE_", "gs": "GOOGLE_"}


def obstore_config(
    options: Mapping[str, str], *, scheme: str, environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Split expanded options into obstore's store ``config`` and ``client_options``.

    obstore drops the environment's client settings (``AWS_ALLOW_HTTP``...) as soon as any client
    option is given, where polars and delta-rs merge the two; the environment's are merged back.

    >>> obstore_config({"timeout": "30s", "aws_region": "x"}, scheme="s3", environ={"AWS_ALLOW_HTTP": "true"})
    ({'aws_region': 'x'}, {'timeout': '30s', 'allow_http': True})
    """
    config: dict[str, str] = {}
    client: dict[str, Any] = {}
    for key, value in options.items():
        bare = _bare(key)
        if bare in _CLIENT_KEYS:
            client[bare] = _client_value(bare, value)
        else:
            config[key.lower()] = value
    if client:
        prefix = _ENV_PREFIX.get(scheme, "")
        for bare in _CLIENT_KEYS - client.keys():
            from_env = environ.get(prefix + bare.upper()) if prefix else None
            if from_env is not None:
                client[bare] = _client_value(bare, from_env)
    return config, client


def _client_value(key: str, value: str) -> Any:
    return value.strip().lower() == "true" if key in _BOOL_CLIENT_KEYS else value

"""obstore's exceptions as coolie's storage errors, named by URI and never quoting a credential.

obstore's own messages carry request URLs (an Azure SAS token travels in the query string) and
response bodies, so only the HTTP status and the store's error code are kept from them.
"""

import re

from obstore import exceptions as obx

from coolie_core.errors import (
    StorageAccessError,
    StorageConfigError,
    StorageConflictError,
    StorageError,
    StorageUnavailableError,
)

__all__ = ["translate"]

_CODE = re.compile(r"<Code>\s*([A-Za-z0-9]+)\s*</Code>|\"reason\"\s*:\s*\"([A-Za-z0-9]+)\"")
_STATUS = re.compile(r"status code: (\d{3})")
_MISSING_CONTAINER = frozenset({"NoSuchBucket", "ContainerNotFound", "FilesystemNotFound"})
_REJECTED = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "ExpiredToken",
        "InvalidToken",
        "InvalidAuthenticationInfo",
    }
)
_DENIED = frozenset(
    {"AccessDenied", "AuthorizationFailure", "AuthorizationPermissionMismatch", "AllAccessDisabled"}
)
# Found no credentials at all: object_store fell through to the instance metadata service.
_NO_CREDENTIALS = re.compile(
    r"169\.254\.169\.254|/latest/api/token|/latest/meta-data|metadata\.google\.internal"
    r"|Missing \w*(Key|Credential)",
    re.I,
)
_UNREACHABLE = re.compile(
    r"error sending request|connection refused|connection reset|timed out|dns error|broken pipe", re.I
)
_CONTAINER_WORD = {"s3": "bucket", "gs": "bucket", "az": "container", "abfss": "container"}


def _detail(text: str) -> tuple[str | None, int | None]:
    match = _CODE.search(text)
    code = next((g for g in match.groups() if g), None) if match else None
    status = _STATUS.search(text)
    return code, int(status.group(1)) if status else None


def translate(exc: BaseException, *, uri: str, scheme: str, action: str) -> BaseException:
    """The coolie error to raise for ``exc``, raised while ``action`` on ``uri``.

    ``FileNotFoundError`` stays one (a missing object is a plain, permanent not-found).
    """
    what = f"{action} {uri}"
    if isinstance(exc, obx.AlreadyExistsError | obx.PreconditionError):
        return StorageConflictError(f"{what}: the object already exists (another writer created it)")
    if isinstance(exc, obx.UnknownConfigurationKeyError):
        key = re.search(r"key[^A-Za-z0-9_]*([A-Za-z0-9_]+)", str(exc))
        name = key.group(1) if key else "?"
        return StorageConfigError(f"{what}: unknown storage option {name!r} for {scheme}://")
    text = str(exc)
    code, status = _detail(text)
    tag = ", ".join(str(p) for p in (code, f"HTTP {status}" if status else None) if p)
    suffix = f" ({tag})" if tag else ""
    container = _CONTAINER_WORD.get(scheme, "bucket")
    # A 404 on a write or a listing can only mean the bucket; a HEAD has no body to tell.
    if code in _MISSING_CONTAINER or (status == 404 and action in ("listing", "writing")):
        return StorageAccessError(f"{what}: the {container} does not exist{suffix}")
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"{what}: no such object")
    if isinstance(exc, obx.UnauthenticatedError) or code in _REJECTED or status == 401:
        return StorageAccessError(f"{what}: the store rejected the credentials{suffix}")
    if isinstance(exc, obx.PermissionDeniedError) or code in _DENIED or status == 403:
        return StorageAccessError(f"{what}: access denied{suffix}")
    if _NO_CREDENTIALS.search(text):
        return StorageAccessError(
            f"{what}: no credentials found; set the cloud's standard environment variables "
            "(e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or the connection's storage_options"
        )
    if (status is not None and (status >= 500 or status == 429)) or _UNREACHABLE.search(text):
        return StorageUnavailableError(f"{what}: the store is unreachable or failing{suffix}")
    if isinstance(exc, ValueError | obx.InvalidPathError):
        return StorageConfigError(f"{what}: invalid location{suffix}")
    return StorageError(f"{what}: {type(exc).__name__}{suffix}")

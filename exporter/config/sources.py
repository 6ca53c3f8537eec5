"""One frozen config class per source type, each parsing its own keys, and their registry.

``SourceConfig`` holds what every source has (name, kind, type, where model and version come
from, the field mapping, the line limit); ``FileSourceConfig``, ``HTTPSourceConfig`` and
``KServeSourceConfig`` add the keys of their type, and nothing else: a key of another type is
refused by the loader. A class's keys are its dataclass fields (``keys.yaml_keys``), so a key is
written once; ``parse_own_keys`` validates the type's own keys and returns them as keyword
arguments. ``source_sections`` parses the common keys and calls it.

Adding a source type: a config class here, listed in ``SOURCE_CONFIG_TYPES``; a source module
in ``exporter.sources``; its line in that package's registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast, get_args

from exporter.config.checker import Checker
from exporter.config.errors import describe, index_path, key_path
from exporter.config.keys import field_default, yaml_keys
from exporter.config.listen import ListenAddressError, split_listen_address

SourceKind = Literal["predictions", "labels"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)
StartAt = Literal["beginning", "end"]
ModelFrom = Literal["inferenceservicename"]
VersionFrom = Literal["metadata", "annotation", "header", "source_revision"]
#: The keys of a ``version_from`` mapping (``source_revision`` is written as a plain string).
VERSION_FROM_KEYS: tuple[str, ...] = tuple(k for k in get_args(VersionFrom) if k != "source_revision")

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ANNOTATION_KEY_RE = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """What every source has; the loader builds the subclass its ``type`` names.

    ``type`` is set by each subclass (it is not an argument). The base class itself stands only
    for a source whose type was invalid, in a config that is refused anyway.
    """

    name: str
    kind: SourceKind
    type: str = field(default="", init=False)
    # where model / version come from: fixed here, or mapped from the record via ``fields``
    model: str | None = None
    model_version: str | None = None
    # canonical field name -> dotted path in the record (id, model, model_version, timestamp,
    # prediction, confidence, probabilities, features, label)
    fields: dict[str, str] = field(default_factory=dict)
    max_line_bytes: int = 1 << 20

    #: The kinds of records this type can read.
    kinds: ClassVar[tuple[SourceKind, ...]] = SOURCE_KINDS
    #: Whether its records name their model (in the field ``fields.model`` maps, by default ``model``:
    #: DESIGN §8); if not, a predictions source must say which model by ``model`` or ``model_keys``.
    records_name_model: ClassVar[bool] = True
    #: Own keys that name the model, or the version, in place of ``model`` / ``model_version``.
    model_keys: ClassVar[tuple[str, ...]] = ()
    version_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parse_own_keys(cls, c: Checker, path: str, m: Mapping[str, Any]) -> dict[str, Any]:
        """The keys of this type (not the common ones) from the source's mapping ``m``, validated,
        as keyword arguments for ``cls``; an invalid or missing value gives a fallback."""
        return {}

    def listener(self) -> tuple[str, str] | None:
        """``(key, address)`` of an address of its own this source listens on, which no other source
        may take; None for most."""
        return None


@dataclass(frozen=True)
class TLSClientConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str


TLS_KEYS = yaml_keys(TLSClientConfig)
BASIC_AUTH_KEYS = yaml_keys(BasicAuth)


@dataclass(frozen=True, kw_only=True)
class FileSourceConfig(SourceConfig):
    """``type: file``: tails the files matching the glob ``path``."""

    type: Literal["file"] = field(default="file", init=False)
    path: str
    start_at: StartAt = "beginning"
    # bytes one poll reads at most (a backlog is caught up over several polls)
    max_bytes_per_poll: int = 4 << 20

    @classmethod
    def parse_own_keys(cls, c: Checker, path: str, m: Mapping[str, Any]) -> dict[str, Any]:
        d = field_default
        return {
            "path": c.text(key_path(path, "path"), m.get("path"), required=True) or "",
            "start_at": c.choice(key_path(path, "start_at"), m.get("start_at"), get_args(StartAt))
            or d(cls, "start_at"),
            "max_bytes_per_poll": c.integer(key_path(path, "max_bytes_per_poll"), m.get("max_bytes_per_poll"),
                                            d(cls, "max_bytes_per_poll"), 1),
        }


@dataclass(frozen=True, kw_only=True)
class HTTPSourceConfig(SourceConfig):
    """``type: http``: polls ``url``, sending the cursor back as ``?<cursor_param>=``."""

    type: Literal["http"] = field(default="http", init=False)
    url: str
    interval: float = 30.0
    cursor_param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    timeout: float = 10.0
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    max_pages_per_poll: int = 100
    # bytes one poll reads at most (a backlog is caught up over several polls)
    max_bytes_per_poll: int = 4 << 20

    @classmethod
    def parse_own_keys(cls, c: Checker, path: str, m: Mapping[str, Any]) -> dict[str, Any]:
        d = field_default
        url = c.url(key_path(path, "url"), m.get("url"), required=True)
        tls = _parse_tls(c, key_path(path, "tls"), m.get("tls"))
        if m.get("tls") is not None and url is not None and not url.startswith("https://"):
            c.error(key_path(path, "tls"), "only used with an https:// url")
        headers = _parse_headers(c, key_path(path, "headers"), m.get("headers"))
        basic_auth = _parse_basic_auth(c, key_path(path, "basic_auth"), m.get("basic_auth"))
        if basic_auth is not None and any(h.lower() == "authorization" for h in headers):
            c.error(key_path(path, "basic_auth"), "cannot be combined with an Authorization header")
        return {
            "url": url or "",
            "interval": c.duration(key_path(path, "interval"), m.get("interval"), d(cls, "interval")),
            "cursor_param": c.text(key_path(path, "cursor_param"), m.get("cursor_param")),
            "headers": headers,
            "basic_auth": basic_auth,
            "timeout": c.duration(key_path(path, "timeout"), m.get("timeout"), d(cls, "timeout")),
            "tls": tls,
            "max_pages_per_poll": c.integer(key_path(path, "max_pages_per_poll"), m.get("max_pages_per_poll"),
                                            d(cls, "max_pages_per_poll"), 1),
            "max_bytes_per_poll": c.integer(key_path(path, "max_bytes_per_poll"), m.get("max_bytes_per_poll"),
                                            d(cls, "max_bytes_per_poll"), 1),
        }


@dataclass(frozen=True, kw_only=True)
class KServeSourceConfig(SourceConfig):
    """``type: kserve``: receives KServe payload-logger CloudEvents (predictions only)."""

    type: Literal["kserve"] = field(default="kserve", init=False)
    model_from: ModelFrom | None = None
    # (kind, key): ("metadata", header) | ("annotation", key) | ("header", name) | ("source_revision", "")
    version_from: tuple[VersionFrom, str] | None = None
    version_header: str | None = None  # older spelling: a POST header, then a ce-metadata key
    listen_address: str | None = None
    max_body_bytes: int = 10 << 20
    queue_size: int = 1000
    forward_to: tuple[str, ...] = ()

    kinds: ClassVar[tuple[SourceKind, ...]] = ("predictions",)
    records_name_model: ClassVar[bool] = False  # a KServe event has no model field
    model_keys: ClassVar[tuple[str, ...]] = ("model_from",)
    version_keys: ClassVar[tuple[str, ...]] = ("version_from", "version_header")

    @classmethod
    def parse_own_keys(cls, c: Checker, path: str, m: Mapping[str, Any]) -> dict[str, Any]:
        d = field_default
        model_from = c.choice(key_path(path, "model_from"), m.get("model_from"), get_args(ModelFrom))
        version_header = _header_name(c, key_path(path, "version_header"), m.get("version_header"))
        version_from = _version_from(c, key_path(path, "version_from"), m.get("version_from"))
        forward_to: list[str] = []
        for i, item in enumerate(c.sequence(key_path(path, "forward_to"), m.get("forward_to")) or []):
            target = c.url(index_path(key_path(path, "forward_to"), i), item, required=True)
            if target is not None:
                forward_to.append(target)
        return {
            "model_from": model_from,
            "version_from": version_from,
            "version_header": version_header,
            "listen_address": _listen_address(c, key_path(path, "listen_address"), m.get("listen_address")),
            "max_body_bytes": c.integer(key_path(path, "max_body_bytes"), m.get("max_body_bytes"),
                                        d(cls, "max_body_bytes"), 1),
            "queue_size": c.integer(key_path(path, "queue_size"), m.get("queue_size"), d(cls, "queue_size"), 1),
            "forward_to": tuple(forward_to),
        }

    def listener(self) -> tuple[str, str] | None:
        return ("listen_address", self.listen_address) if self.listen_address is not None else None


#: Config class by ``type``; the order is the order of ``type: must be one of ...``.
SOURCE_CONFIG_TYPES: dict[str, type[SourceConfig]] = {
    cls.type: cls for cls in (FileSourceConfig, HTTPSourceConfig, KServeSourceConfig)
}


# -- values of the type-specific keys -------------------------------------------------------------


def _version_from(c: Checker, path: str, raw: object) -> tuple[VersionFrom, str] | None:
    """``{metadata: X-Model-Version}``, ``{annotation: <key>}``, ``{header: <name>}`` or
    ``source_revision``: where a KServe event's version comes from."""
    if raw is None:
        return None
    allowed = "source_revision, or a mapping with one of metadata, annotation, header"
    if raw == "source_revision":
        return ("source_revision", "")
    if not isinstance(raw, dict):
        c.error(path, f"must be {allowed}, got {describe(raw)}")
        return None
    m = c.mapping(path, raw, VERSION_FROM_KEYS)
    present = [k for k in VERSION_FROM_KEYS if m.get(k) is not None]
    if len(present) != 1:
        if present or len(m) == len(raw):  # else an unknown key was reported already
            c.error(path, f"must set exactly one of {', '.join(VERSION_FROM_KEYS)}, got "
                          f"{', '.join(present) or 'none'}")
        return None
    kind = present[0]
    key = key_path(path, kind)
    value = _header_name(c, key, m[kind]) if kind != "annotation" else _annotation_key(c, key, m[kind])
    return (cast(VersionFrom, kind), value) if value is not None else None


def _annotation_key(c: Checker, path: str, raw: object) -> str | None:
    """A Kubernetes annotation key: an optional DNS prefix and '/', then a name of 1-63 characters."""
    key = c.text(path, raw)
    if key is not None and not _ANNOTATION_KEY_RE.match(key):
        c.error(path, f"must be a Kubernetes annotation key such as serving.kserve.io/model-version, "
                      f"got {describe(key)}")
        return None
    return key


def _header_name(c: Checker, path: str, raw: object) -> str | None:
    name = c.text(path, raw)
    if name is not None and not _HEADER_NAME_RE.match(name):
        c.error(path, f"must be an HTTP header name, got {describe(name)}")
        return None
    return name


def _parse_headers(c: Checker, path: str, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {describe(raw)}")
        return {}
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
            c.error(path, f"keys must be HTTP header names, got {describe(key)}")
            continue
        text = c.text(key_path(path, key), value, required=True, allow_empty=True)
        if text is None:
            continue
        if "\r" in text or "\n" in text:
            c.error(key_path(path, key), "must not contain line breaks")
            continue
        headers[key] = text
    return headers


def _parse_basic_auth(c: Checker, path: str, raw: object) -> BasicAuth | None:
    if raw is None:
        return None
    m = c.mapping(path, raw, BASIC_AUTH_KEYS)
    if not isinstance(raw, dict):
        return None
    username = c.text(key_path(path, "username"), m.get("username"), required=True)
    password = c.text(key_path(path, "password"), m.get("password"), required=True, allow_empty=True)
    if username is None or password is None:
        return None
    return BasicAuth(username=username, password=password)


def _parse_tls(c: Checker, path: str, raw: object) -> TLSClientConfig:
    m = c.mapping(path, raw, TLS_KEYS)
    cert_file = c.text(key_path(path, "cert_file"), m.get("cert_file"))
    key_file = c.text(key_path(path, "key_file"), m.get("key_file"))
    if (m.get("cert_file") is None) != (m.get("key_file") is None):
        c.error(path, "cert_file and key_file must be set together")
    return TLSClientConfig(
        ca_file=c.text(key_path(path, "ca_file"), m.get("ca_file")),
        cert_file=cert_file,
        key_file=key_file,
        insecure_skip_verify=c.boolean(
            key_path(path, "insecure_skip_verify"), m.get("insecure_skip_verify"), False
        ),
    )


def _listen_address(c: Checker, path: str, raw: object) -> str | None:
    text = c.text(path, raw)
    if text is None:
        return None
    try:  # the same syntax as --web.listen-address; port 0 would be a port nobody can point a logger at
        valid = split_listen_address(text)[1] > 0
    except ListenAddressError:
        valid = False
    if not valid:
        c.error(path, f"must be host:port such as 127.0.0.1:9742 or :9742, got {describe(text)}")
        return None
    return text

"""Pull images over the OCI distribution API (what docker registries speak).

    GET /v2/<name>/manifests/<tag|digest>   an index / manifest list, or an image manifest
    GET /v2/<name>/blobs/<digest>           the config and the layers

Authentication follows the registry's `WWW-Authenticate` challenge: `Bearer
realm=...,service=...,scope=...` gets a token from the realm (with basic credentials
when there are any), `Basic` sends the credentials directly. Credentials come from
docker's config.json ($DOCKER_CONFIG/config.json, else ~/.docker/config.json): the
`auth` (base64 user:password) or `username`/`password` of the registry's entry.
Plain http is used only for registries marked insecure. Layers are streamed
straight into the layer store's unpacker and verified there (digest, size, diff_id).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, Iterable

from ..errors import ImageError
from . import oci as _oci
from . import reference as _reference
from .layers import ImageRecord, LayerStore

ACCEPT = ", ".join((_oci.OCI_INDEX, _oci.DOCKER_LIST, _oci.OCI_MANIFEST, _oci.DOCKER_MANIFEST))
TIMEOUT = 60
_CHALLENGE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


INSECURE_ENV = "FASTCONTAIN_INSECURE_REGISTRIES"


def insecure_registries() -> set[str]:
    """Registries marked insecure (plain http) in $FASTCONTAIN_INSECURE_REGISTRIES, comma-separated
    host[:port]s: the counterpart of docker's insecure-registries setting."""
    return {h.strip() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}


def docker_config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def credentials(registry: str, path: str | None = None) -> tuple[str, str] | None:
    """(user, password) for `registry` from docker's config.json, if it has them."""
    path = path or docker_config_path()
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read the docker credentials in {path}: {e}") from None
    auths = config.get("auths") or {}
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == _reference.DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io", _reference.DOCKER_HUB_API]
    for key in list(auths):
        host = urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/")[0]
        if host == registry and key not in keys:
            keys.append(key)
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ImageError(f"{path}: the auth of {key!r} is not base64 'user:password'") from None
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): quoted or bare for k, quoted, bare in _CHALLENGE.findall(rest)}


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects (blob stores), dropping our Authorization when the host changes."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class Client:
    """One registry, one repository: requests with the auth its challenges ask for."""

    def __init__(self, ref: _reference.Reference, *, insecure: bool = False, auth: tuple[str, str] | None = None) -> None:
        self.ref = ref
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{ref.api_host}/v2/{ref.repository}"
        self.auth = auth if auth is not None else credentials(ref.registry)
        self.authorization: str | None = None
        self.opener = urllib.request.build_opener(_NoRedirectAuth())

    def _open(self, url: str, accept: str | None) -> Any:
        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        if self.authorization:
            req.add_header("Authorization", self.authorization)
        return self.opener.open(req, timeout=TIMEOUT)

    def get(self, path: str, accept: str | None = None) -> Any:
        url = f"{self.base}/{path}"
        try:
            try:
                return self._open(url, accept)
            except urllib.error.HTTPError as e:
                if e.code != 401 or self.authorization is not None and not self._renewable():
                    raise
                challenge = e.headers.get("WWW-Authenticate", "")
                e.close()
                self._authenticate(challenge)
                return self._open(url, accept)
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            e.close()
            if e.code == 401:
                who = "anonymously" if self.auth is None else f"as {self.auth[0]!r}"
                raise ImageError(f"{self.ref}: the registry refused access {who} ({detail}); "
                                 f"credentials are read from {docker_config_path()}") from None
            if e.code == 404:
                raise ImageError(f"{self.ref}: not found in the registry ({url}: {detail})") from None
            raise ImageError(f"{self.ref}: GET {url} failed: HTTP {e.code} {detail}") from None
        except urllib.error.URLError as e:
            hint = (" (for a registry served over plain http, mark it insecure: --tls-verify=false)"
                    if self.scheme == "https" else "")
            raise ImageError(f"{self.ref}: cannot reach {url}: {e.reason}{hint}") from None
        except OSError as e:
            raise ImageError(f"{self.ref}: GET {url} failed: {e}") from None

    def _renewable(self) -> bool:
        return bool(self.authorization and self.authorization.startswith("Bearer "))

    def _authenticate(self, challenge: str) -> None:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.auth is None:
                raise ImageError(f"{self.ref}: the registry wants basic credentials and {docker_config_path()} has none "
                                 f"for {self.ref.registry}")
            self.authorization = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            return
        if scheme != "bearer" or not params.get("realm"):
            raise ImageError(f"{self.ref}: unsupported authentication challenge {challenge!r}")
        query = {"scope": params.get("scope") or f"repository:{self.ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        if urllib.parse.urlsplit(url).scheme not in ("https", self.scheme):
            raise ImageError(f"{self.ref}: refusing the token realm {params['realm']!r}: not https")
        req = urllib.request.Request(url)
        if self.auth is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            e.close()
            raise ImageError(f"{self.ref}: the token server {params['realm']} refused: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ImageError(f"{self.ref}: no token from {params['realm']}: {e}") from None
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ImageError(f"{self.ref}: the token server {params['realm']} sent no token")
        self.authorization = f"Bearer {token}"

    def manifest(self, reference: str, accept: str = ACCEPT, limit: int = 4 << 20) -> tuple[bytes, str, str | None]:
        """(bytes, media type, the registry's Docker-Content-Digest header)."""
        with self.get(f"manifests/{reference}", accept) as r:
            data = r.read(limit + 1)
            media = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            digest = r.headers.get("Docker-Content-Digest")
        if len(data) > limit:
            raise ImageError(f"{self.ref}: manifest {reference} is larger than {limit} bytes")
        return data, media, digest

    def blob(self, digest: str) -> BinaryIO:
        return self.get(f"blobs/{digest}")  # type: ignore[no-any-return]


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(65536) or b"{}")
        errors = body.get("errors") or []
        text = "; ".join(f"{x.get('code')}: {x.get('message')}" for x in errors if isinstance(x, dict))
        return text or (e.reason or "")
    except (ValueError, OSError, AttributeError):
        return str(e.reason or "")


def pull(
    store: LayerStore, ref: str, *, platform: str | None = None, insecure: bool | Iterable[str] = False,
    progress: _oci.Progress | None = None, auth: tuple[str, str] | None = None,
) -> ImageRecord:
    """Pull `ref` into the store; its record. Only missing layers are fetched."""
    parsed = _reference.parse(ref)
    if not isinstance(insecure, bool):
        insecure = parsed.registry in set(insecure)
    insecure = insecure or parsed.registry in insecure_registries()
    wanted = platform or _oci.host_platform()
    client = Client(parsed, insecure=insecure, auth=auth)
    data, media, header_digest = client.manifest(parsed.reference)
    digest = parsed.digest or header_digest or _oci.sha256(data)
    _oci.verify_bytes(data, digest, None, f"{parsed}: manifest")
    doc = _oci.parse_json(data, f"{parsed}: manifest")
    media = doc.get("mediaType") or media
    if media in _oci.INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        desc = _oci.choose(doc.get("manifests") or [], wanted, f"{parsed}: the manifest list")
        digest = desc["digest"]
        data, media, _ = client.manifest(digest)
        _oci.verify_bytes(data, digest, desc.get("size"), f"{parsed}: manifest")
        doc = _oci.parse_json(data, f"{parsed}: manifest")
        media = doc.get("mediaType") or media
    if media not in _oci.MANIFEST_TYPES and doc.get("schemaVersion") != 2:
        raise ImageError(f"{parsed}: unsupported manifest type {media!r} (docker schema 1 is not supported)")
    config_desc = doc.get("config") or {}
    config_digest = config_desc.get("digest")
    if not isinstance(config_digest, str):
        raise ImageError(f"{parsed}: the manifest has no config")
    with client.blob(config_digest) as r:
        config_bytes = _oci.verify_bytes(r.read(16 << 20), config_digest, config_desc.get("size"), f"{parsed}: config")
    config = _oci.parse_json(config_bytes, f"{parsed}: config")
    ids = _oci.diff_ids(config, str(parsed))
    descs = doc.get("layers") or []
    if len(descs) != len(ids):
        raise ImageError(f"{parsed}: the manifest lists {len(descs)} layers but the config {len(ids)} diff_ids")
    layers = []
    for desc, diff_id in zip(descs, ids):
        if desc.get("mediaType") not in _oci.LAYER_TYPES:
            raise ImageError(f"{parsed}: layer {desc.get('digest')} has the unsupported media type {desc.get('mediaType')!r}")
        layers.append(_oci.LayerSource(
            open=functools.partial(client.blob, desc["digest"]), blob=desc["digest"], size=desc.get("size"),
            diff_id=diff_id, name=desc["digest"],
        ))
    tags = (parsed.tagged(),) if parsed.tag or not parsed.digest else ()
    with store.loading():
        return _oci.record_image(
            store, config_bytes, layers, tags=tags, digests=(f"{parsed.name}@{digest}",),
            source=f"{client.scheme}://{parsed.api_host}/{parsed.repository}", manifest=doc, progress=progress,
        )

"""Test images made by real tools: umoci builds an OCI layout from a busybox rootfs in
several layers, skopeo turns it into archives and pushes it to a registry; and a
Debian docker-registry on 127.0.0.1 (anonymous, htpasswd basic auth, or token auth
through a tiny token server in this process), each with its state in a tmp folder.

The layers of `fc/busybox:layers` (bottom first):
  1. busybox and its applets, /etc (passwd with an `app` user), /etc/deleted-later,
     /replaced/ (a directory with a file), /opq/{old-a,old-b}, /data/keep
  2. a whiteout of /etc/deleted-later (umoci insert --whiteout)
  3. /replaced turned into a regular file, /etc/added-in-3 (umoci repack computes the diff)
  4. /opq replaced by an opaque directory holding only new-c (umoci insert --opaque)
`fc/busybox:entry` is the same layers with Entrypoint, Cmd, Env, WorkingDir, User,
ExposedPorts and Labels set by `umoci config`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TOOLS = ("umoci", "skopeo")
REGISTRY = "/usr/bin/docker-registry"


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.fail(f"{tool} is not installed: .ci/run installs it (apt-get install umoci skopeo docker-registry apache2-utils)")


def run(*argv: str | Path, **kw: object) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{' '.join(map(str, argv))} exited {r.returncode}: {r.stderr.strip()}"
    return r.stdout


def busybox_rootfs(root: Path) -> Path:
    busybox = os.path.realpath(shutil.which("busybox") or "/bin/busybox")
    for d in ("bin", "etc", "tmp", "replaced", "opq", "data", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run(busybox, "--list").split():
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/data:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n")
    (root / "etc" / "deleted-later").write_text("layer 1\n")
    (root / "replaced" / "inside").write_text("in the directory\n")
    (root / "opq" / "old-a").write_text("a\n")
    (root / "opq" / "old-b").write_text("b\n")
    (root / "data" / "keep").write_text("kept\n")
    os.chown(root / "data", 1000, 1000)
    return root


@dataclass(frozen=True)
class Built:
    layout: Path  # OCI layout directory, tags "layers" and "entry"
    rootfs: Path  # the first layer's rootfs (what a flat import would hold)


def build_layout(work: Path) -> Built:
    need(*TOOLS)
    layout = work / "oci"
    rootfs = busybox_rootfs(work / "rootfs")
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:layers")
    run("umoci", "insert", "--image", f"{layout}:layers", rootfs, "/")
    run("umoci", "insert", "--image", f"{layout}:layers", "--whiteout", "/etc/deleted-later")
    bundle = work / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:layers", bundle)
    shutil.rmtree(bundle / "rootfs" / "replaced")
    (bundle / "rootfs" / "replaced").write_text("now a file\n")
    (bundle / "rootfs" / "etc" / "added-in-3").write_text("layer 3\n")
    run("umoci", "repack", "--image", f"{layout}:layers", bundle)
    shutil.rmtree(bundle)
    newopq = work / "newopq"
    newopq.mkdir()
    (newopq / "new-c").write_text("c\n")
    run("umoci", "insert", "--image", f"{layout}:layers", "--opaque", newopq, "/opq")
    run(
        "umoci", "config", "--image", f"{layout}:layers", "--tag", "entry",
        "--config.entrypoint", "/bin/echo", "--config.entrypoint", "entry",
        "--config.cmd", "from-cmd", "--config.env", "FROM_IMAGE=yes", "--config.env", "PATH=/bin:/usr/bin",
        "--config.workingdir", "/data", "--config.user", "app", "--config.exposedports", "8080/tcp",
        "--config.label", "org.example.kind=test",
    )
    run("umoci", "gc", "--layout", layout)
    return Built(layout, rootfs)


def docker_archive(layout: Path, tag: str, dest: Path, name: str) -> Path:
    run("skopeo", "copy", "--quiet", f"oci:{layout}:{tag}", f"docker-archive:{dest}:{name}")
    return dest


def oci_archive(layout: Path, tag: str, dest: Path) -> Path:
    run("skopeo", "copy", "--quiet", f"oci:{layout}:{tag}", f"oci-archive:{dest}:{tag}")
    return dest


# -- a registry -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    user: str | None = None
    password: str | None = None
    tokens: list[str] | None = None  # token auth: the scopes tokens were issued for

    def push(self, layout: Path, tag: str, dest: str, fmt: str = "oci") -> str:
        """skopeo copy of an OCI layout tag to this registry; the pushed reference."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", fmt]
        if self.user:
            argv += ["--dest-creds", f"{self.user}:{self.password}"]
        ref = f"{self.host}/{dest}"
        run(*argv, f"oci:{layout}:{tag}", f"docker://{ref}")
        return ref

    def docker_config(self, folder: Path) -> Path:
        """A docker config.json holding this registry's credentials."""
        folder.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return folder


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"docker-registry did not listen on {port}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def registry(work: Path, auth: str = "none") -> Iterator[Registry]:
    """docker-registry on 127.0.0.1:<free port>, storage and config in `work`; auth is
    "none", "htpasswd" (basic) or "token" (bearer tokens from a token server here)."""
    need(REGISTRY)
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {work / 'storage'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}', secret: fastcontain-test}}",
    ]
    user = password = None
    tokens = None
    with contextlib.ExitStack() as stack:
        if auth == "htpasswd":
            need("htpasswd")
            user, password = "fcuser", "fc-secret"
            run("htpasswd", "-Bbc", work / "htpasswd", user, password)
            config.append(f"auth: {{htpasswd: {{realm: fastcontain-test, path: {work / 'htpasswd'}}}}}")
        elif auth == "token":
            user, password = "fctoken", "fc-token-secret"
            server = stack.enter_context(token_server(work / "token", user, password))
            tokens = server.requests
            config.append(
                "auth: {token: {realm: '%s', service: fastcontain-registry, issuer: fastcontain-test-issuer, "
                "rootcertbundle: %s}}" % (server.realm, server.cert)
            )
        (work / "config.yml").write_text("\n".join(config) + "\n")
        log = work / "registry.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen([REGISTRY, "serve", str(work / "config.yml")], stdout=logf, stderr=subprocess.STDOUT)
        try:
            _wait_listening(port, proc, log)
            yield Registry(f"127.0.0.1:{port}", user, password, tokens)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- a token server (docker's token auth spec), signing with openssl ---------------

@dataclass(frozen=True)
class TokenServer:
    realm: str
    cert: Path
    requests: list[str]  # the scopes asked for, to show it was used


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def token_server(work: Path, user: str, password: str) -> Iterator[TokenServer]:
    work.mkdir(parents=True, exist_ok=True)
    key, cert = work / "key.pem", work / "cert.pem"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-days", "2", "-subj", "/CN=fastcontain-test-token")
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"], capture_output=True, check=True).stdout
    x5c = base64.b64encode(der).decode()
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            from urllib.parse import parse_qs, urlsplit

            query = parse_qs(urlsplit(self.path).query)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scope = " ".join(query.get("scope", [""]))
            requests.append(scope)
            # a client may ask for several scopes at once (repeated or space-separated): grant each
            token = sign([s for s in scope.split(" ") if s], query.get("service", [""])[0])
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def sign(scopes: list[str], service: str) -> str:
        access = []
        for s in scopes:
            kind, name, actions = s.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
        claims = {"iss": "fastcontain-test-issuer", "sub": user, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": f"fc-{now}-{len(requests)}", "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=signing_input.encode(),
                                   capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield TokenServer(f"http://127.0.0.1:{httpd.server_address[1]}/token", cert, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except Exception:
        return False


def docker_oci_archive(legacy: Path, dest: Path) -> Path:
    """The layout docker 25+ writes for `docker save`: an OCI layout (blobs/sha256, index.json,
    oci-layout) with manifest.json naming blobs/sha256/<hex> files, made from a legacy archive."""
    import hashlib
    import io
    import tarfile

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    with tarfile.open(legacy) as src:
        entry = json.loads(src.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = src.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
        layers = [src.extractfile(p).read() for p in entry["Layers"]]  # type: ignore[union-attr]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{sha(config)}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{sha(l)}", "size": len(l)} for l in layers],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{sha(manifest)}", "size": len(manifest),
        "annotations": {"io.containerd.image.name": f"docker.io/{entry['RepoTags'][0]}", "org.opencontainers.image.ref.name": entry["RepoTags"][0].rpartition(":")[2]},
    }]}).encode()
    files = {f"blobs/sha256/{sha(b)}": b for b in [config, manifest, *layers]}
    files["index.json"] = index
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["manifest.json"] = json.dumps([{
        "Config": f"blobs/sha256/{sha(config)}", "RepoTags": entry["RepoTags"],
        "Layers": [f"blobs/sha256/{sha(l)}" for l in layers],
    }]).encode()
    with tarfile.open(dest, "w") as out:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dest


def multi_platform(layout: Path, amd64_tag: str, arm64_tag: str, tag: str) -> None:
    """Add to the layout an OCI index tagged `tag` listing two manifests: one as linux/amd64,
    the other as linux/arm64 (its content is amd64 too; only the choice is tested)."""
    import hashlib

    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    manifests = []
    for t, arch in ((amd64_tag, "amd64"), (arm64_tag, "arm64")):
        d = {k: v for k, v in by_tag[t].items() if k != "annotations"}
        d["platform"] = {"os": "linux", "architecture": arch}
        manifests.append(d)
    blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
    digest = hashlib.sha256(blob).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(blob)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
                               "size": len(blob), "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))

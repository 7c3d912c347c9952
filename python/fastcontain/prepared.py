"""What can be prepared once is prepared once: configs, resolved images, image users and
spec templates.

Resolving an image (finding and checking the store's busybox rootfs, say) and reading
its /etc/passwd and /etc/group cost about 0.7 ms per container, more than half of what
the kernel needs for one. Both results depend only on the image's name, the store and
the image's files, so they are kept per process, keyed by name and store, and checked
on each use by one stat per layer (inode and mtime): a layer that was replaced or
removed since is resolved again.

A Config made from the same options is the same frozen value every time when its checks
read nothing but those options (`config`), and the part of the spec that depends only
on a Config, its image and user is the same too (`compile`): each is made once and
reused, so `run(image, command)` in a loop validates and compiles once (~75 us of
Python a container, before). A cache is never a lock on the hot path: readers take
entries as they are (a dict lookup is atomic), writers take `_lock` to bound the size.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Any, Sequence

from . import image as _image
from . import rootless as _rootless
from . import security as _security
from . import spec as _spec
from .config import Config
from .state import Paths

_lock = threading.Lock()
_images: dict[tuple[str, str, str], tuple[_image.Image, tuple[tuple[int, int], ...]]] = {}
_users: dict[tuple[str | None, _image.Image], _spec.User] = {}
_configs: dict[tuple[object, ...], Config] = {}
_replaced: dict[tuple[object, ...], tuple[Config, Config]] = {}
_templates: dict[int, tuple[Config, _image.Image, frozenset[str], _spec.User, dict[str, Any]]] = {}
MAX_ENTRIES = 256


def _stamp(img: _image.Image) -> tuple[tuple[int, int], ...] | None:
    out = []
    for layer in img.layers:
        try:
            st = os.stat(layer)
        except OSError:
            return None
        out.append((st.st_ino, st.st_mtime_ns))
    return tuple(out)


def _bounded(cache: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
    if len(cache) >= MAX_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[key] = value


def resolve(name: str, *, pull: str = "never") -> _image.Image:
    """image.resolve(name, pull=pull), remembered while its layers are unchanged
    (pull="always" asks the registry every time, so it is never remembered)."""
    if pull == "always":
        return _image.resolve(name, pull=pull)
    key = (name if not name.startswith((".", "dir:.")) else os.path.abspath(name), _image.default_store(), pull)
    hit = _images.get(key)
    if hit is not None and _stamp(hit[0]) == hit[1]:
        return hit[0]
    img = _image.resolve(name, pull=pull)
    stamp = _stamp(img)
    if stamp is not None:
        with _lock:
            _bounded(_images, key, (img, stamp))
    return img


def user(spec_user: str | None, img: _image.Image) -> _spec.User:
    """spec.resolve_user, remembered per image (whose files resolve() keeps checked)."""
    key = (spec_user, img)
    hit = _users.get(key)
    if hit is None:
        hit = _spec.resolve_user(spec_user, img)
        with _lock:
            _bounded(_users, key, hit)
    return hit


# Config's fields whose checks read nothing but the value given (no host path, CPU list,
# block device, rlimit, capability bounding set, seccomp profile, subuid file, /proc):
# a Config made of these alone is equal every time the same values are given.
PURE_FIELDS = frozenset({
    "env", "workdir", "hostname", "user", "name", "readonly_rootfs", "namespaces", "network",
    "memory", "memory_swap", "memory_reservation", "cpu_shares", "cpu_period", "cpu_quota", "pids_limit",
    "cpuset_mems", "blkio_weight", "entrypoint", "pull", "cap_drop", "group_add", "ports", "ip", "dns",
    "egress", "init", "tty",
})
_SCALARS = (str, type(None))
_NUMBERS = (bool, int, float)


class _Unkeyable(Exception):
    pass


def _key(value: object) -> object:
    """A hashable stand-in for an option's value, equal only for values Config treats
    alike: strings and None as they are, numbers with their type (True == 1, but
    pids_limit=True is an error), lists and tuples as tuples, a mapping as its items."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t in _NUMBERS:
        return (t, value)
    if t is list or t is tuple:
        return tuple([_key(v) for v in value])  # type: ignore[attr-defined]
    if t is dict:
        return (dict, tuple([(_key(k), _key(v)) for k, v in value.items()]))  # type: ignore[attr-defined]
    raise _Unkeyable


def config(image: str, command: Sequence[str] | str | None, fields: dict[str, Any]) -> Config:
    """Config(image=image, command=command, **fields), made once for the same values when
    every field is one of PURE_FIELDS (else made each time, as those checks read the host)."""
    try:
        if _rootless.active() or not fields.keys() <= PURE_FIELDS:  # (rootless: the caller's ids in the userns)
            raise _Unkeyable
        key = (_key(image), _key(command), tuple([(k, _key(v)) for k, v in fields.items()]))
    except _Unkeyable:
        return Config(image=image, command=command, **fields)
    hit = _configs.get(key)
    if hit is None:
        hit = Config(image=image, command=command, **fields)
        with _lock:
            _bounded(_configs, key, hit)
    return hit


def replaced(base: Config, command: Sequence[str] | str | None, fields: dict[str, Any]) -> Config:
    """dataclasses.replace(base, command=command, **fields) (base itself when nothing is
    given), made once for the same base and values when every field is one of PURE_FIELDS:
    a Pool's per-run command and options (replace() runs all of Config's checks, ~40 us,
    and a new Config misses compile()'s template)."""
    if command is None and not fields:
        return base
    try:
        if _rootless.active() or not fields.keys() <= PURE_FIELDS:
            raise _Unkeyable
        key = (id(base), _key(command), tuple([(k, _key(v)) for k, v in fields.items()]))
    except _Unkeyable:
        return replace(base, command=command, **fields)
    hit = _replaced.get(key)
    if hit is not None and hit[0] is base:  # (an id is reused only once its Config is gone)
        return hit[1]
    made = replace(base, command=command, **fields)
    with _lock:
        _bounded(_replaced, key, (base, made))
    return made


def _static(config: Config) -> bool:
    """Whether the security part of config's spec is the same for every container: not
    with a seccomp profile file (re-read when it changes), nor privileged (the host's
    device nodes, scanned as they come and go), nor a user namespace (paths of its own)."""
    if config.privileged or config.userns is not None:
        return False
    for item in config.security_opt:  # as security.SecurityOpt.parse reads them
        key, sep, value = item.partition("=")
        if not sep:
            key, _, value = item.partition(":")
        if key == "seccomp" and value not in ("unconfined", "default"):
            return False
    return True


def compile(
    config: Config, image: _image.Image, paths: Paths, stdio: Sequence[int], *, wait_for_start: bool
) -> dict[str, Any]:
    """spec.compile with config.user resolved by user() and, where the result allows
    (_static), the spec template made once per Config and image: while both are the same
    objects (a re-resolved image is a new one) and the capability bounding set is the one
    it was made with (security.host_bounding_set is cleared when capabilities drop)."""
    if not _static(config):
        return _spec.compile(config, image, paths, stdio, wait_for_start=wait_for_start,
                             user=user(config.user, image))
    bounding = _security.host_bounding_set()
    hit = _templates.get(id(config))  # the entry holds config: its id is not reused while it is there
    if hit is None or hit[0] is not config or hit[1] is not image or hit[2] is not bounding:
        who = user(config.user, image)
        hit = (config, image, bounding, who, _spec.template(config, image, who))
        with _lock:
            _bounded(_templates, id(config), hit)
    return _spec.compile(config, image, paths, stdio, wait_for_start=wait_for_start, user=hit[3], template_=hit[4])


def clear() -> None:
    with _lock:
        _images.clear()
        _users.clear()
        _configs.clear()
        _replaced.clear()
        _templates.clear()

"""The environment a notebook ran in, as stored in its ``metadata.gpuenv``, and finding it again.

Kernel names (``gpuenv-<environment id>``) hash where an environment lives, so they do not
travel. The record says what the environment *is* (image, versions, a content
fingerprint) so another machine can find its own environment of the same content. It
holds no host paths, environment variables or secrets: only catalog facts that are the
same wherever the environment exists. It may also carry the environment's
``export --no-builds`` environment.yml (``spec``, without its ``prefix``) and, for an image,
its registry digest, so a machine that has neither can rebuild or pull it
(environments/create/restore.py).

Resolution takes the first rule that matches, strongest first (:data:`RULES`); the two
content rules (``image_id``, ``fingerprint``) are *exact*, the others only promise the same
PyTorch and CUDA, so a front end asks before it uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .model import Environment

METADATA_KEY = "gpuenv"
RULES = ("image_id", "fingerprint", "name_and_versions", "torch_and_cuda")
EXACT_RULES = frozenset({"image_id", "fingerprint"})
RULE_TEXT = {
    "image_id": "the same Docker image id",
    "fingerprint": "the same packages (fingerprint)",
    "name_and_versions": "the same kind and name with the same PyTorch and CUDA",
    "torch_and_cuda": "the same PyTorch and CUDA (major.minor)",
}
_TEXT_FIELDS = (
    "environment_id", "name", "kind", "display_name", "image", "image_id", "python_version",
    "torch_version", "cuda_version", "cudnn_version", "recorded_at", "fingerprint",
    "image_digest",
)  # fmt: skip
MAX_TEXT = 500
MAX_SPEC = 1024 * 1024  # a spec longer than this in a notebook is not read


@dataclass
class NotebookRecord:
    """``metadata.gpuenv`` of a notebook: which environment it was last saved from."""

    environment_id: str
    name: str
    kind: str
    display_name: str
    image: str | None = None
    image_id: str | None = None
    python_version: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpus: list[str] = field(default_factory=list)
    recorded_at: str = ""
    fingerprint: str | None = None
    spec: str | None = None
    image_digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON; ``spec`` and ``image_digest`` only when there is one."""
        data = asdict(self)
        for optional in ("spec", "image_digest"):
            if data[optional] is None:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: object) -> NotebookRecord | None:
        """The record in a notebook's metadata, or None when there is none that can be read.

        Notebooks come from anywhere: every field is checked, nothing else is kept.
        """
        if not isinstance(data, Mapping):
            return None
        values: dict[str, Any] = {}
        for key in _TEXT_FIELDS:
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and value and len(value) <= MAX_TEXT:
                values[key] = value
        if not all(values.get(k) for k in ("environment_id", "name", "kind")):
            return None
        gpus = data.get("gpus")
        names = gpus if isinstance(gpus, list) else []
        spec = data.get("spec")
        if isinstance(spec, str) and spec.strip() and len(spec) <= MAX_SPEC:
            values["spec"] = spec
        values["gpus"] = [g for g in names if isinstance(g, str) and len(g) <= MAX_TEXT][:64]
        values.setdefault("display_name", values["name"])
        return cls(**values)

    def describe(self) -> str:
        """``PyTorch 2.9 · CUDA 12.1`` (``Python 3.11`` without torch)."""
        return versions_text(self.torch_version, self.cuda_version, self.python_version)


@dataclass
class Match:
    """The environment of this machine chosen for a record, and the rule that chose it."""

    environment: Environment
    rule: str

    @property
    def exact(self) -> bool:
        return self.rule in EXACT_RULES

    def to_json(self) -> dict[str, Any]:
        env = self.environment
        return {
            "environment_id": env.id,
            "kernel_name": env.kernel_name,
            "display_name": env.display_name,
            "rule": self.rule,
            "rule_text": RULE_TEXT[self.rule],
            "exact": self.exact,
        }


def build_record(
    env: Environment,
    fingerprint: str | None,
    gpus: Iterable[str] = (),
    now: datetime | None = None,
    spec: str | None = None,
    image_digest: str | None = None,
) -> NotebookRecord:
    """The record of a notebook saved while a kernel of ``env`` ran for it."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    image = env.location.get("image") if env.kind == "docker" else None
    image_id = env.location.get("image_id") if env.kind == "docker" else None
    return NotebookRecord(
        environment_id=env.id,
        name=env.name.rstrip("/").rsplit("/", 1)[-1],
        kind=env.kind,
        display_name=env.display_name,
        image=str(image) if image else None,
        image_id=str(image_id) if image_id else None,
        python_version=env.python_version,
        torch_version=env.torch_version,
        cuda_version=env.cuda_version,
        cudnn_version=env.cudnn_version,
        gpus=list(dict.fromkeys(gpus)),
        recorded_at=moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        fingerprint=fingerprint,
        spec=spec,
        image_digest=image_digest if env.kind == "docker" else None,
    )


def same_recorded_content(old: object, new: NotebookRecord) -> bool:
    """True when ``old`` (a notebook's metadata) records the same as ``new`` but the time."""
    previous = NotebookRecord.from_json(old)
    if previous is None:
        return False
    return {**previous.to_json(), "recorded_at": ""} == {**new.to_json(), "recorded_at": ""}


def find_match(
    record: NotebookRecord,
    environments: Iterable[Environment],
    fingerprint_of: Callable[[Environment], str | None],
) -> Match | None:
    """This machine's environment for ``record`` by the first rule of :data:`RULES` that holds.

    Within one rule, the environment with the record's id wins (the same machine), then
    catalog order. ``fingerprint_of`` is only called for environments of the record's kind.
    """
    envs = sorted(environments, key=lambda e: e.id != record.environment_id)
    for rule in RULES:
        for env in envs:
            if _holds(rule, record, env, fingerprint_of):
                return Match(env, rule)
    return None


def _holds(
    rule: str,
    record: NotebookRecord,
    env: Environment,
    fingerprint_of: Callable[[Environment], str | None],
) -> bool:
    if rule == "image_id":
        return bool(record.image_id) and env.location.get("image_id") == record.image_id
    if rule == "fingerprint":
        if not record.fingerprint or env.kind != record.kind:
            return False
        return fingerprint_of(env) == record.fingerprint
    if rule == "name_and_versions":
        return (
            env.kind == record.kind
            and env.name == record.name
            and env.torch_version == record.torch_version
            and env.cuda_version == record.cuda_version
        )
    # torch_and_cuda: only for a record that names a PyTorch.
    return (
        bool(record.torch_version)
        and major_minor(env.torch_version) == major_minor(record.torch_version)
        and major_minor(env.cuda_version) == major_minor(record.cuda_version)
    )


def missing_text(record: NotebookRecord) -> str:
    """Why nothing matched, in words: what the notebook needs."""
    wanted = [f"{record.name} ({record.kind})"]
    if record.image:
        wanted.append(
            f"image {record.image}" + (f" ({record.image_id})" if record.image_id else "")
        )
    wanted.append(record.describe())
    return (
        "no environment here matches the one this notebook was saved with: "
        + ", ".join(w for w in wanted if w)
        + "; none has the same image id, the same packages, or "
        + f"PyTorch {major_minor(record.torch_version) or '(none)'} with "
        + (f"CUDA {major_minor(record.cuda_version)}" if record.cuda_version else "no CUDA (CPU)")
    )


def mismatch(record: NotebookRecord, env: Environment) -> str | None:
    """``recorded with PyTorch 2.9 · CUDA 12.1, running PyTorch 2.13 · CPU`` or None."""
    same_torch = major_minor(env.torch_version) == major_minor(record.torch_version)
    same_cuda = major_minor(env.cuda_version) == major_minor(record.cuda_version)
    if same_torch and same_cuda:
        return None
    running = versions_text(env.torch_version, env.cuda_version, env.python_version)
    return f"recorded with {record.describe()}, running {running}"


def versions_text(torch: str | None, cuda: str | None, python: str | None) -> str:
    if torch:
        return f"PyTorch {major_minor(torch)} · " + (f"CUDA {major_minor(cuda)}" if cuda else "CPU")
    return f"Python {major_minor(python)}" if python else "no PyTorch"


def major_minor(version: str | None) -> str | None:
    if not version:
        return None
    public = version.split("+", 1)[0]
    return ".".join(public.split(".")[:2])

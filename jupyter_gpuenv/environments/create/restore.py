"""Getting a notebook's recorded environment back on a machine that lacks it.

The notebook's record (``metadata.gpuenv``, notebook_record.py) says what it ran in. Three
outcomes, decided here for the CLI (``jupyter gpuenv restore``) and REST
(``POST /gpuenv/api/notebooks/restore``) alike:

- the environment is here (the same id, image id or packages): nothing to build, the
  notebook is only pointed at it;
- a Docker image: nothing is built; the record's image and digest say what to pull;
- a conda or venv environment: its recorded ``--no-builds`` spec is created through the
  same plan and engines as ``jupyter gpuenv create`` (a venv comes back as a conda
  environment with its Python and its pip packages), then the notebook is re-pointed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import GpuEnvError
from ..model import Environment
from ..notebook_record import METADATA_KEY, NotebookRecord, build_record, find_match
from .create import CreateRequest
from .spec import parse_environment_yml


class NothingToRestore(GpuEnvError):
    """The record names an environment that cannot be rebuilt from it (409)."""

    status = 409


@dataclass(frozen=True)
class ImageToPull:
    """A Docker environment's record: what to pull to get the image back."""

    image: str | None
    image_id: str | None
    image_digest: str | None

    @classmethod
    def of(cls, record: NotebookRecord) -> ImageToPull:
        return cls(record.image, record.image_id, record.image_digest)

    @property
    def pull_command(self) -> str | None:
        """``docker pull repo@sha256:...``; by tag when the image was never in a registry."""
        if self.image_digest:
            return f"docker pull {self.image_digest}"
        return f"docker pull {self.image}" if self.image else None

    def lines(self) -> list[str]:
        """What a user reads: the image, what pins it, and how to get it."""
        out = [f"image: {self.image or '(not recorded)'}"]
        if self.image_digest:
            out.append(f"digest: {self.image_digest}")
        else:
            out.append("digest: none recorded (the image was built or loaded locally)")
        if self.image_id:
            out.append(f"image id: {self.image_id}")
        if self.pull_command:
            out.append(f"get it with: {self.pull_command}")
        if not self.image_digest and self.image_id:
            out.append(
                f"a pull by tag may give another image than {self.image_id}; rebuild it where "
                "it was built if the ids differ"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "image_id": self.image_id,
            "image_digest": self.image_digest,
            "pull_command": self.pull_command,
        }


def present_environment(
    record: NotebookRecord,
    environments: Iterable[Environment],
    fingerprint_of: Callable[[Environment], str | None],
) -> Environment | None:
    """The recorded environment when it is on this machine (same id or same content)."""
    match = find_match(record, environments, fingerprint_of)
    if match is not None and (match.exact or match.environment.id == record.environment_id):
        return match.environment
    return None


def restore_request(
    record: NotebookRecord,
    name: str | None = None,
    prefix: str | None = None,
    cuda: str | None = None,
) -> CreateRequest:
    """The create that rebuilds ``record``'s environment (by default under its old name)."""
    if record.kind == "docker":
        raise NothingToRestore(
            f"{record.name} is a Docker image; it is pulled, not built: "
            + "; ".join(ImageToPull.of(record).lines())
        )
    if not record.spec:
        raise NothingToRestore(
            f"the notebook's record of {record.name} ({record.kind}) carries no environment "
            "spec: it was saved where c.GpuEnv.notebook_record_spec is 'off', or the spec "
            "was larger than c.GpuEnv.notebook_record_spec_max_bytes. Export it where it "
            "exists (jupyter gpuenv export --no-builds) and create it from that file"
        )
    spec = parse_environment_yml(record.spec)
    spec.prefix = None
    if not (name or prefix):
        name = spec.name or record.name
    return CreateRequest(spec=spec, name=name, prefix=prefix, cuda=cuda)


def repoint(
    metadata: dict[str, Any],
    record: NotebookRecord,
    env: Environment,
    fingerprint: str | None,
) -> None:
    """Make ``metadata`` name ``env``: its kernelspec, and a record of it keeping the spec."""
    metadata["kernelspec"] = {
        "name": env.kernel_name,
        "display_name": env.display_name,
        "language": "python",
    }
    new = build_record(env, fingerprint, record.gpus, spec=record.spec)
    metadata[METADATA_KEY] = new.to_json()

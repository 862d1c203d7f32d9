"""Local env provisioner (placeholder until provisioning lands)."""

from jupyter_client.provisioning import LocalProvisioner


class LocalEnvProvisioner(LocalProvisioner):
    pass

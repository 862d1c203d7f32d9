"""Docker provisioner (placeholder until provisioning lands)."""

from jupyter_client.provisioning import LocalProvisioner


class DockerProvisioner(LocalProvisioner):
    pass

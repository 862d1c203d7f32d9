"""The only place that talks to Docker: one client factory, the labels, short-lived runs
and the NVIDIA runtime detector. Everything above asks through here."""

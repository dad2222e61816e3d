"""Container engines: the `Container` and `Backend` protocols, systemd-nspawn and Podman."""

"""kubenet: prepare, launch and connect to a local QEMU cluster for learning Kubernetes."""

__version__ = "0.1.0"

"""tortie: workload networking and IP address management, compatible with Project Calico."""

__version__ = "0.1.0"

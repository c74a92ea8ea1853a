"""ganeti-cmk: Checkmk local checks for Ganeti nodes running KVM instances."""

__version__ = "0.1.0"

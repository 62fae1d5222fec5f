"""This machine: what it is and offers, and the one decision per command (imports the floors below).

  firmware      find UEFI firmware through QEMU's descriptors
  probe         look at this machine: OS, qemu, firmware, bridges, the best accelerator,
                and the host's side of bridge mode (its address, forwarding, DNS)
  target        the one decision per command: host, accelerator, network mode, root or not
  macos *       the Macs of today, from what macOS and qemu print: SME and `-cpu host`, ranges macOS keeps
"""

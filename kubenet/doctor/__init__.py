"""`invoke doctor`: the learner's network and cluster checked in seconds, with the fix for each fault.

  report *      a check's result (ok, failed, not applicable), what was seen, the fix; table and data
  hostchecks    the host: its accelerator runs a guest, firmware, qemu, memory, disk, the subnet against
                its own networks, bridge mode's pieces, user mode's switch and cables, the tunnel
  guestchecks   each VM from the inside, over one login: cloud-init, clock, names and answers, the
                outside, disk and memory
  diagnose      every check at once, each bounded in time
"""

"""Several hosts (`hosts:`, and `host:` per role): the other machines that run some of the VMs.

  remote        the other hosts over SSH: one shared connection each, kubenet's own command run
                there, quoted, each answer bounded in time
  bundle        what a host is sent (its copy of cluster.yaml, templates, the login key) and
                how it takes it in: kubenet's own files only, into a directory it marked
  cable         the VDE cables that join the hosts' switches into one segment, each kept
                plugged in by a supervisor of its own (`up` starts it, `down` stops it)
  multihost     what setup, up, down, stop, start, reset and destroy do on the other hosts
"""

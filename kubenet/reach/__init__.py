"""Reaching the VMs from the host: SSH sessions, commands on many VMs, copies.

  ssh           one SSH session, and a command run on many VMs at once (`ssh`, `exec`)
  sshall        the `<cluster>-ssh` tmux session: `ssh-all`
  copy          files and directories to and from VMs with scp: `invoke cp`
"""

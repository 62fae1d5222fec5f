"""Running VMs: qemu in tmux, the switch, waiting until they are ready, stopping them.

  qemu *        the qemu command line
  layout *      the tmux sessions as data: windows, panes, names, whose session it is
  tmux          apply a layout to tmux in batched calls, read panes back
  vde           the rootless cluster switch; a VM cut off from it
  asroot        networks that need root: qemu starts as root, then runs as the user; sudo once
  handover      root's first program in such a pane: the QMP socket, made as the user, for qemu
  launch        start VMs: `invoke vm` (exec) and `invoke up` (tmux), then wait
  readiness     wait until VMs answer SSH and cloud-init has finished, all at once, reading the
                marks first and then logging in once, never knocking on a guest that is not ready
  bootprogress  while `up` waits: what each VM waits for, for how long, its console's last line
  vmstate       is a VM running, under which pid, what its guest proved, what qemu says
  shutdown      power VMs off over QMP within a timeout
  hostmemory    the host memory a VM's qemu holds (`ls`) and is likely to hold (the warning)
  consolelog    a VM's console log: `invoke logs`
  guestagent    the guest agent on each VM's virtio port: whether one runs; a guest's clock set through it
  guestclock    a guest's clock set to the host's (its agent, else one SSH login) and read back
  tunnel        host loopback ports forwarded into the cluster through its first VM
"""

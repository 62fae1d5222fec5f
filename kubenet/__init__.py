"""kubenet: prepare, launch and connect to a local QEMU cluster for learning Kubernetes.

A map: each module has one concern. Pure ones (no files, no processes) are marked *.

The cluster and the machine
  cluster *     the cluster as data: roles, VMs, names, MACs, IPs, and every default
  config        read cluster.yaml, validate it, build a Cluster
  host *        kinds of host: CPU architectures, what a host offers, described hosts (`--host`)
  firmware      find UEFI firmware through QEMU's descriptors
  probe         look at this machine: OS, qemu, firmware, bridges, the best accelerator,
                and the host's side of bridge mode (its address, forwarding, DNS)
  target        the one decision per command: host, accelerator, network mode, root or not
  network *     network modes: which applies, each one's NIC options and SSH endpoint;
                the cluster's names as /etc/hosts lines
  paths *       where each file lives (state_dir, the per-user cache)
  statedir      state_dir is the user's alone and kubenet's own; the cluster lock
  hostnet       the host side of bridge mode (`invoke hostnet`): bridge, forwarding, NAT,
                DNS and DHCP, /etc/hosts, pod routes, NFS; made from cluster.yaml, undone exactly
  hostpiece     what hostnet's pieces share: the host's files, the piece, blocks between markers
  nfsexport     the NFS export of a host folder to the VMs (`nfs:`): nfs-ganesha on Linux, nfsd on macOS
  podroutes     the host's routes to the pods' networks (`pod_routes:`); macOS's, kept by `up`

Preparing VMs (`make setup`, `invoke vmsetup`)
  image         the base image: download, verify, content-addressed cache
  disk          qcow2 overlays and UEFI variable stores (qcow2 too); whether a disk is in use
  imagecheck    whether a disk and a variable store are whole (qcow2 metadata, sizes)
  seed          cloud-init seed files * and the `cidata` ISO; instance-id from their content
  netconfig     per-role network-config extras: checked as v2, merged into kubenet's *
  cloudconfig   check templates and user-data as cloud-init would, before a seed is written
  sshkeys       host keys, known_hosts and ssh_config
  prepare       put those together for each VM, checking every input first
  makevars      the cluster as Make variables for the Makefile

Running VMs
  qemu *        the qemu command line
  qemuargs *    what a user's qemu_args may not do: redefine kubenet's options, open a monitor,
                listen beyond loopback, drop the disk's writes, reach kubenet's files
  layout *      the tmux sessions as data: windows, panes, names, whose session it is
  tmux          apply a layout to tmux in batched calls, read panes back
  vde           the rootless cluster switch
  asroot        networks that need root: qemu starts as root, then runs as the user; sudo once
  handover      root's first program in such a pane: the QMP socket, made as the user, for qemu
  launch        start VMs: `invoke vm` (exec) and `invoke up` (tmux), then wait
  bootmarks     the marks a guest prints on its console at each boot (sshd listening, cloud-init
                finished): the watcher the seed gives it *, and reading them back from the log
  readiness     wait until VMs answer SSH and cloud-init has finished, all at once, reading the
                marks first and then logging in once, never knocking on a guest that is not ready
  bootprogress  while `up` waits: what each VM waits for, for how long, its console's last line
  provision     which VMs cloud-init provisions again at their next boot (their seed changed)
  identity      each VM as it was made (id, MAC, address): renumbering refused, orphans found
  vmstate       is a VM running, under which pid, what its guest passed, what qemu says
  qmp           the one QMP client: commands and events, each within a time bound
  shutdown      power VMs off over QMP within a timeout; `down`
  ssh           the one ssh command builder; `ssh` and `exec`
  sshall        the `<cluster>-ssh` tmux session: `ssh-all`
  tunnel        host loopback ports forwarded into the cluster through its first VM
  copy          files and directories to and from VMs with scp: `invoke cp`
  status        what `ls` shows: a row per VM and the notes below the table
  hostmemory    the host memory a VM's qemu holds (`ls`) and is likely to hold (the warning)
  consolelog    a VM's console log: `invoke logs`
  guestagent    the guest agent on each VM's virtio port: whether one runs; a guest's clock set through it
  guestclock    a guest's clock set to the host's (its agent, else one SSH login) and read back
  snaprecord    what each whole-cluster snapshot is: its record, names, what changed since
  snapjobs      a snapshot's QMP side: its drives, its jobs, every VM paused together
  snapshot      whole-cluster snapshots, live or stopped, all VMs or none: `invoke snapshot`
  destroy       the whole cluster gone: VMs off, state_dir removed (`invoke destroy`)

Several hosts (`hosts:`, and `host:` per role)
  remote        the other hosts over SSH: their ssh_config blocks, one shared connection each,
                kubenet's own command run there, quoted, each answer bounded in time
  bundle        what a host is sent (its copy of cluster.yaml, templates, the login key) and
                how it takes it in: kubenet's own files only, into a directory it marked
  cable         the VDE cables that join the hosts' switches into one segment, each kept
                plugged in by a supervisor of its own (`up` starts it, `down` stops it)
  multihost     what setup, up, down, stop, start, ls, reset and destroy do on the other hosts

Plumbing
  process       the one place that runs, watches and signals programs; the one pid-file reader
  parallel      one thing done for many VMs at once, Ctrl-C heard
  fsutil        atomic writes, private directories, locks
  errors        one exception class per kind of user error, each with a hint
  yamltext      YAML as kubenet reads users' files: safe, a key given twice refused, a bomb refused
  cli           glue for the tasks: one-line errors, VM selection, tables, progress lines
  tasks         the invoke tasks (tasks.py in the checkout re-exports them)
  program       the `kubenet` command: the same tasks as a program of their own

The path of `make up`: the Makefile runs `invoke makevars` (config -> target ->
makevars) to learn the per-VM files, decides which are out of date, and hands
them to one `invoke vmsetup` (prepare: image, disk, seed, sshkeys); then
`invoke up` (launch: target, qemu, layout, tmux, vde) starts every VM that is
not running in `<cluster>-qemu` and waits until they are ready (readiness, vmstate).
"""

__version__ = "0.1.0"

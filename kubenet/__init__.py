"""kubenet: prepare, launch and connect to a local QEMU cluster for learning Kubernetes.

A map: one package per part, each module one concern (each package's __init__ names its
modules). A package imports only the packages above it in this list, never one below
(tests/test_imports.py holds them to it):

  plumbing    processes, parallel work, files and locks, errors, YAML, QMP
  model       the cluster as data; cluster.yaml read and checked; hosts, networks, paths
  store       what kubenet keeps under state_dir: its lock, each VM's identity, boots
  machine     this machine: firmware, what it offers, the decision each command takes
  hostside    the host side of bridge mode (`hostnet`): bridge, NAT, DNS, routes, NFS
  prepare     every file a VM is made of (`make setup`): image, disks, seeds, keys
  run         VMs running: qemu in tmux, the switch, readiness, shutdown, clocks, tunnel
  reach       the VMs reached: ssh, exec, ssh-all, cp
  snapshots   whole-cluster snapshots, live or stopped, all or none
  hosts       several hosts: remote commands, bundles, cables, each host's part
  doctor      the host and every VM checked, each fault with its fix (`invoke doctor`)
  lifecycle   the cluster's life across its hosts: up, down, restart, ls, reset, destroy
  cli         the invoke tasks and the `kubenet` command

The path of `make up`: the Makefile runs `invoke makevars` (prepare.makevars) to learn the
per-VM files, decides which are out of date, and hands them to one `invoke vmsetup`
(prepare.vmsetup: image, disk, seed, sshkeys); then `invoke up` (lifecycle.conduct, then
run.launch: target, qemu, layout, tmux, vde) starts every VM that is not running in
`<cluster>-qemu` and waits until they are ready (run.readiness, prepare.bootmarks).
"""

__version__ = "0.1.0"

"""The cluster as data, and what a user may write of it (imports plumbing only).
Pure modules (no files, no processes) are marked *.

  cluster *     the cluster as data: roles, VMs, names, MACs, IPs, and every default
  config        read cluster.yaml, validate it (every problem at once), build a Cluster
  qemuargs *    what a user's qemu_args may not do: redefine kubenet's options, open a monitor,
                listen beyond loopback, drop the disk's writes, reach kubenet's files
  choose *      which VMs the options --id, --name and --role choose
  host *        kinds of host: CPU architectures, UEFI firmware files, described hosts (`--host`)
  network *     network modes: which applies, each one's NIC options and SSH endpoint, the ssh
                command line; the cluster's names as /etc/hosts lines
  paths *       where each file lives (state_dir, the per-user cache)
"""

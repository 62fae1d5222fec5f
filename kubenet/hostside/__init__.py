"""The host side of bridge mode (`invoke hostnet`), made from cluster.yaml and undone exactly.

  hostnet       the command, and the bridge's pieces: bridge, forwarding, NAT, DNS and DHCP, /etc/hosts
  hostpiece     what hostnet's pieces share: the host's files, the piece, blocks between markers
  nfsexport     the NFS export of a host folder to the VMs (`nfs:`): nfs-ganesha on Linux, nfsd on macOS
  podroutes     the host's routes to the pods' networks (`pod_routes:`); macOS's, kept by `up`
  bootunit      the systemd unit that makes the host side again at boot (`--persist`)
"""

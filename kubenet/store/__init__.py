"""What kubenet keeps under state_dir about the cluster, beside the VMs' files (imports plumbing and model).

  statedir      state_dir is the user's alone and kubenet's own; the cluster lock
  identity      each VM as it was made (id, MAC, address): renumbering refused, orphans found
  provision     which VMs cloud-init provisions again at their next boot (their seed changed)
"""
